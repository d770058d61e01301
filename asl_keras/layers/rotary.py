"""Rotary position embedding (RoPE) for multi-head attention inputs.

Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding" (2021), in the
"rotate-half" layout that Llama and the 1st-place model (`mdl_2_pt.py`) use: the head width is
split into two halves, and channel `i < D/2` and channel `i + D/2` form one rotation pair at
frequency `base^(-2i/D)`. Written here (rather than taken from keras-hub, which has the same
layer) so that the model depends on Keras alone.
"""

from __future__ import annotations

import keras
from keras import ops


def rotary_angles(length, head_dim: int, base: float = 10000.0):
    """float32 `[length, head_dim]`: position `t` times the pair frequencies, repeated for both
    halves (`concat([f, f])`), the table whose cos/sin rotate the pairs."""
    inverse = 1.0 / ops.power(base, ops.arange(0, head_dim, 2, dtype="float32") / head_dim)
    angles = ops.cast(ops.arange(length), "float32")[:, None] * inverse[None, :]
    return ops.concatenate([angles, angles], axis=-1)


@keras.saving.register_keras_serializable(package="asl_keras")
class RotaryEmbedding(keras.layers.Layer):
    """Rotary position embedding (Su et al., 2021, RoFormer) in the rotate-half layout of Llama
    and the 1st-place model: rotates query/key channels by their frame position, no weights.

    Args:
        base: float, the wavelength base of the pair frequencies (10000 in RoFormer and the
            reference). Defaults to `10000.0`.

    Call arguments:
        x: `[B, T, H, D]` per-head queries or keys, positions along axis 1, `D` even.

    Returns:
        `[B, T, H, D]`, same dtype: `x * cos(a) + rotate_half(x) * sin(a)` with
        `rotate_half([x1, x2]) = [-x2, x1]` and the angles `a` of `rotary_angles`. The angles
        are computed in float32 even under mixed precision (a float16 position times frequency
        loses whole radians at a few hundred frames).
    """

    def __init__(self, base: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        self.base = base

    def call(self, x):
        angles = rotary_angles(ops.shape(x)[1], x.shape[-1], self.base)[None, :, None, :]
        cos, sin = ops.cast(ops.cos(angles), x.dtype), ops.cast(ops.sin(angles), x.dtype)
        first, second = ops.split(x, 2, axis=-1)
        return x * cos + ops.concatenate([-second, first], axis=-1) * sin

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "base": self.base}
