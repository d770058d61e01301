"""Squeezeformer convolution module (reference: `mdl_*_pt.py` ConvModule, spec section 3.2).

zero pads -> pointwise d -> 2d (+bias) -> GLU (first half value, second half gate) ->
depthwise conv k (zero 'same' padding, no bias) -> BatchNorm on real frames only -> Swish ->
pointwise d -> d (+bias) -> dropout -> zero pads. Shapes `[B, T, D]`, mask `[B, T]`.
"""

from __future__ import annotations

import keras
from keras import ops


def zero_pads(x, frame_mask):
    """Set padded frames of `[B, T, D]` to 0."""
    return ops.where(ops.cast(frame_mask, "bool")[..., None], x, ops.zeros_like(x))


@keras.saving.register_keras_serializable(package="asl_keras")
class ConvModule(keras.layers.Layer):
    def __init__(self, dim: int, kernel_size: int = 51, expansion: int = 2,
                 dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.kernel_size, self.expansion, self.dropout = (dim, kernel_size, expansion,
                                                                    dropout)
        p = dict(dtype=self.dtype_policy)
        self.pw1 = keras.layers.Dense(dim * expansion, name="pw_conv_1", **p)
        self.dw = keras.layers.DepthwiseConv1D(kernel_size, padding="same", use_bias=False,
                                               name="dw_conv", **p)
        self.bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn", **p)
        self.pw2 = keras.layers.Dense(dim, name="pw_conv_2", **p)
        self.drop = keras.layers.Dropout(dropout, **p)

    def build(self, input_shape):
        self.pw1.build(input_shape)
        glu_shape = (*input_shape[:-1], self.dim * self.expansion // 2)
        self.dw.build(glu_shape)
        self.bn.build(glu_shape)
        self.pw2.build(glu_shape)

    def call(self, x, frame_mask, training=False):
        value, gate = ops.split(self.pw1(zero_pads(x, frame_mask)), 2, axis=-1)
        h = self.dw(value * ops.sigmoid(gate))
        h = self.bn(h, training=training, mask=ops.cast(frame_mask, "bool"))
        h = self.drop(self.pw2(ops.silu(h)), training=training)
        return zero_pads(h, frame_mask)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "kernel_size": self.kernel_size,
                "expansion": self.expansion, "dropout": self.dropout}
