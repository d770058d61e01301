"""Zipformer's temporal down- and upsampling between stacks (docs/zipformer.md).

`SimpleDownsample(d)`: groups of d consecutive frames -> one frame, a weighted average with
weights softmax(d learned scalars, init 0 = plain mean). icefall pads the sequence by repeating
its last frame; here sequences are padded with masked frames, so each group averages only its
real frames (weights renormalised over them) and is real if any of its frames is. A sequence of
length L gives ceil(L / d) real frames, exactly as icefall's repeat-padding does.
`SimpleUpsample(d)`: each frame repeated d times, cut to the original length.
Shapes: `[B, T, C]`, frame mask `[B, T]` -> `[B, ceil(T/d), C]`, mask `[B, ceil(T/d)]`.
"""

from __future__ import annotations

import keras
from keras import ops


def _pad_time(x, extra):
    """Zero frames appended on axis 1 (`extra` may be a tensor: lengths can be dynamic)."""
    pad = [[0, 0]] * len(x.shape)
    pad[1] = [0, extra]
    return ops.pad(x, pad)


def downsample_mask(frame_mask, factor: int):
    """`[B, T]` -> `[B, ceil(T/factor)]`: a group is real if any of its frames is."""
    b, t = ops.shape(frame_mask)[0], ops.shape(frame_mask)[1]
    groups = -(-t // factor)
    m = _pad_time(ops.cast(frame_mask, "float32"), groups * factor - t)
    # static batch size in the reshapes: TFLite cannot legalise later new-axis slices of a
    # tensor whose batch dimension became unknown
    return ops.max(ops.reshape(m, (b, groups, factor)), axis=-1)


@keras.saving.register_keras_serializable(package="asl_keras")
class SimpleDownsample(keras.layers.Layer):
    """icefall's Zipformer2 `SimpleDownsample`: groups of `factor` frames -> one frame.

    A weighted average with weights softmax(`factor` learned scalars, init 0 = plain mean).
    icefall pads the sequence by repeating its last frame; here each group averages only its
    real frames (weights renormalised over them) and is real if any of its frames is, so a
    sequence of length L gives ceil(L / factor) real frames, exactly as icefall's repeat-padding
    does (docs/zipformer.md, 'Temporal downsampling').

    Args:
        factor: int, number of consecutive frames per output frame.

    Call arguments:
        x: float tensor `[B, T, C]`.
        frame_mask: `[B, T]`, 1 = real frame, 0 = padding.

    Returns:
        `(out, mask)`: `out [B, ceil(T / factor), C]` in the dtype of `x`, and the float32
        frame mask `[B, ceil(T / factor)]` of the groups (`downsample_mask`).
    """

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.logits = self.add_weight(shape=(self.factor,), initializer="zeros", name="logits")

    def call(self, x, frame_mask):
        d = self.factor
        b, t, c = ops.shape(x)[0], ops.shape(x)[1], x.shape[-1]
        groups = -(-t // d)
        extra = groups * d - t
        xs = ops.reshape(_pad_time(x, extra), (b, groups, d, c))
        m = ops.reshape(_pad_time(ops.cast(frame_mask, "float32"), extra), (b, groups, d))
        w = ops.softmax(ops.cast(self.logits, "float32")) * m
        w = w / ops.maximum(ops.sum(w, axis=-1, keepdims=True), 1e-20)
        out = ops.sum(xs * ops.cast(ops.expand_dims(w, -1), x.dtype), axis=2)
        return out, downsample_mask(frame_mask, d)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def upsample(x, factor: int, length):
    """`[B, T', C]` -> `[B, length, C]`: each frame repeated `factor` times, then cut."""
    return ops.repeat(x, factor, axis=1)[:, :length]
