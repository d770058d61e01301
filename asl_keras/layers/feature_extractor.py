"""Input side of the 1st-place model: part normalisation and the landmark feature extractor.

Reference: the 1st place's `models/mdl_2_pt.py` (docs/reference.md, 'Input side').
Shapes: landmarks `[B, T, N, 3]`, frame mask `[B, T]` (1 real frame, 0 padding).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from asl_keras import landmarks

PARTS = {"lhand": landmarks.LEFT_HAND_IDX, "rhand": landmarks.RIGHT_HAND_IDX,
         "face": landmarks.FACE_IDX, "pose": landmarks.POSE_IDX}


@keras.saving.register_keras_serializable(package="asl_keras")
class PartNormalization(keras.layers.Layer):
    """The 1st-place cfg_2 part normalisation (`mdl_2_pt.py`): each body part standardised per
    frame and coordinate, over that part's landmarks.

    For each part (left hand, right hand, 76 face points, 12 pose points): subtract the mean and
    divide by the population std over the part's landmarks, per frame and coordinate; non-finite
    -> 0; then every landmark whose globally normalised x + y is exactly 0 (missing, dropped or
    padded) is set to 0. No weights.

    Args:
        None beyond Keras' own (`name`, `dtype`, ...).

    Call arguments:
        x: float tensor `[B, T, 130, 3]`, globally normalised landmarks in the model order.

    Returns:
        `[B, T, 130, 3]` in the compute dtype, still in the model landmark order.
    """

    def call(self, x):
        x = ops.cast(x, "float32")
        out = ops.zeros_like(x)
        for idx in PARTS.values():
            part = ops.take(x, idx, axis=2)
            mean = ops.mean(part, axis=2, keepdims=True)
            std = ops.sqrt(ops.mean(ops.square(part - mean), axis=2, keepdims=True))
            z = (part - mean) / std
            z = ops.where(ops.isfinite(z), z, 0.0)
            # scatter the part back to its landmark positions
            onehot = ops.cast(np.eye(landmarks.NUM_LANDMARKS, dtype="float32")[idx], "float32")
            out = out + ops.einsum("btpc,pn->btnc", z, onehot)
        present = ops.not_equal(x[..., 0] + x[..., 1], 0.0)[..., None]
        return ops.cast(ops.where(present, out, 0.0), self.compute_dtype)


@keras.saving.register_keras_serializable(package="asl_keras")
class LandmarkFeatureExtractor(keras.layers.Layer):
    """The 1st-place landmark feature extractor (`mdl_2_pt.py`): Conv2D over (time, landmarks)
    -> BN + SiLU -> flatten -> Dense -> masked BN -> zero pads.

    Conv 3x3, `filters` filters (32 in the reference), stride (1, 2), zero padding 1, no bias
    (PyTorch semantics, so explicit padding then 'valid'); `BatchNorm2d` momentum 0.1 (Keras
    0.9) over all positions; the flattened `[T, ceil(N/2) * filters]` features (landmark-major,
    channels fastest) go through a bias-free Dense and a BatchNorm computed on real frames only
    (PyTorch momentum 0.95 = Keras 0.05); padded frames are zeroed.

    Args:
        dim: int, output width.
        filters: int, filters of the 3x3 convolution. Defaults to `32`.

    Call arguments:
        x: float tensor `[B, T, N, 3]`, N landmarks (130, or one part's for a part extractor).
        frame_mask: `[B, T]`, 1 = real frame, 0 = padding.
        training: bool, BatchNorms from batch statistics (the last one over real frames only).

    Returns:
        `[B, T, dim]`, padded frames 0.
    """

    def __init__(self, dim: int, filters: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.filters = dim, filters
        self.pad = keras.layers.ZeroPadding2D(1, dtype=self.dtype_policy)
        self.conv = keras.layers.Conv2D(filters, 3, strides=(1, 2), use_bias=False,
                                        dtype=self.dtype_policy, name="conv_stem")
        self.bn_conv = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                                       dtype=self.dtype_policy, name="bn_conv")
        self.linear = keras.layers.Dense(dim, use_bias=False, dtype=self.dtype_policy,
                                         name="stem_linear")
        self.bn = keras.layers.BatchNormalization(momentum=0.05, epsilon=1e-5,
                                                  dtype=self.dtype_policy, name="stem_bn")

    def build(self, input_shape):
        b, t, n, c = input_shape
        self.pad.build(input_shape)
        self.conv.build((b, None if t is None else t + 2, n + 2, c))
        width = (n - 1) // 2 + 1
        self.bn_conv.build((b, t, width, self.filters))
        self.linear.build((b, t, width * self.filters))
        self.bn.build((b, t, self.dim))

    def call(self, x, frame_mask, training=False):
        h = self.conv(self.pad(x))
        h = ops.silu(self.bn_conv(h, training=training))
        h = ops.reshape(h, (ops.shape(h)[0], ops.shape(h)[1], -1))
        h = self.linear(h)
        valid = ops.cast(frame_mask, "bool")
        h = self.bn(h, training=training, mask=valid)
        return ops.where(valid[..., None], h, ops.zeros_like(h))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "filters": self.filters}


@keras.saving.register_keras_serializable(package="asl_keras")
class DominantHandFeatures(keras.layers.Layer):
    """Shape of the signing hand, independent of handedness, position and size -> Dense(dim).

    This project's addition, not in the 1st-place model (which sees each hand in its own slot
    and relies on flip augmentation; the 2nd-place team mirrored left-handed signers instead).
    Per sequence the hand with more detected frames is the dominant one; a left hand is mirrored
    (x -> -x) so both handednesses give the same features. Per frame the 21 points are taken
    relative to the wrist and divided by their RMS distance from it; a Dense with bias maps the
    63 values to `dim`. Frames without that hand, and padded frames, give 0.

    Args:
        dim: int, output width.

    Call arguments:
        x: float tensor `[B, T, 130, 3]`, globally normalised landmarks (a missing point is
            exactly 0).
        frame_mask: `[B, T]`, 1 = real frame, 0 = padding.

    Returns:
        `[B, T, dim]` in the compute dtype; 0 on frames without the hand and on padded frames.
    """

    def __init__(self, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.linear = keras.layers.Dense(dim, name="hand_linear", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.linear.build((*input_shape[:2], 21 * 3))

    def call(self, x, frame_mask):
        x = ops.cast(x, "float32")
        mask = ops.cast(frame_mask, "float32")
        hands = [ops.take(x, idx, axis=2) for idx in (landmarks.LEFT_HAND_IDX,
                                                      landmarks.RIGHT_HAND_IDX)]
        # A missing point is exactly 0 after normalisation (x + y == 0 as in PartNormalization).
        present = [ops.cast(ops.any(ops.not_equal(h[..., 0] + h[..., 1], 0.0), axis=2),
                            "float32") * mask for h in hands]
        right = ops.sum(present[1], axis=1) >= ops.sum(present[0], axis=1)  # [B]
        mirrored_left = hands[0] * ops.convert_to_tensor([-1.0, 1.0, 1.0])
        hand = ops.where(right[:, None, None, None], hands[1], mirrored_left)
        seen = ops.where(right[:, None], present[1], present[0])  # [B, T]
        rel = hand - hand[:, :, :1]
        size = ops.sqrt(ops.mean(ops.sum(ops.square(rel), axis=-1), axis=-1, keepdims=True))
        shape = rel / ops.maximum(size, 1e-6)[..., None]
        shape = ops.where(ops.isfinite(shape), shape, 0.0) * seen[..., None, None]
        flat = ops.reshape(shape, (ops.shape(shape)[0], ops.shape(shape)[1], 21 * 3))
        h = self.linear(ops.cast(flat, self.compute_dtype))
        return h * ops.cast(seen[..., None], h.dtype)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}
