"""The 1st-place Squeezeformer block (docs/reference.md, 'Squeezeformer encoder').

Post-LN, no time reduction; each module's input is first scaled and shifted by learned
per-channel parameters (init 1 and 0) while the residual uses the unscaled input:
    x = LN(x + MHSA(x*s1 + b1)); x = LN(x + FF(x*s2 + b2))
    x = LN(x + Conv(x*s3 + b3)); x = LN(x + FF(x*s4 + b4))
Shapes `[B, T, D]`, mask `[B, T]`. The reference applies LN/FF to real frames only and leaves
padded frames at their pre-LN values; here they are computed like real frames. No output at a
real frame depends on them (attention masks padded keys, the conv module zeroes pads).
"""

from __future__ import annotations

import keras
from keras import ops

from asl_keras.layers.attention import RelativeSelfAttention, RotarySelfAttention
from asl_keras.layers.conv_module import ConvModule
from asl_keras.layers.feed_forward import FeedForward

MODULES = ("mhsa", "ff_mhsa", "conv", "ff_conv")


@keras.saving.register_keras_serializable(package="asl_keras")
class SqueezeformerBlock(keras.layers.Layer):
    """Squeezeformer block (Kim et al., 2022) as the 1st place uses it: post-LN, full frame rate.

    MHSA, FFN, conv module, FFN, each `x = LN(x + module(x * s + b))` with a learned
    per-channel input scale and shift (init 1 and 0) while the residual uses the unscaled
    input; LayerNorm epsilon 1e-5. Padded frames are computed like real frames (the reference
    leaves them at their pre-LN values); no output at a real frame depends on them.

    Args:
        dim: int, model width.
        heads: int, attention heads. Defaults to `4`.
        attention: str, `"rotary"` (`RotarySelfAttention`, cfg_2) or `"relative"`
            (`RelativeSelfAttention`, cfg_1). Defaults to `"rotary"`.
        ff_expansion: int, expansion of both FFNs. Defaults to `1`.
        conv_expansion: int, expansion of the conv module's first pointwise layer.
            Defaults to `2`.
        kernel_size: int, depthwise kernel of the conv module. Defaults to `51`.
        dropout: float, dropout of the FFNs, the conv module and the relative attention (the
            rotary one has none). Defaults to `0.1`.
        zero_glu_pads: bool, passed to `ConvModule`: zero padded frames after the GLU.
            Defaults to `False` (the reference's padding leak).

    Call arguments:
        x: float tensor `[B, T, dim]`.
        frame_mask: `[B, T]`, 1 = real frame, 0 = padding.
        training: bool, dropouts on and BatchNorm from batch statistics.

    Returns:
        `[B, T, dim]`.
    """

    def __init__(self, dim: int, heads: int = 4, attention: str = "rotary",
                 ff_expansion: int = 1, conv_expansion: int = 2, kernel_size: int = 51,
                 dropout: float = 0.1, zero_glu_pads: bool = False, **kwargs):
        super().__init__(**kwargs)
        if attention not in ("rotary", "relative"):
            raise ValueError(f"attention must be 'rotary' or 'relative', got {attention!r}")
        self.dim, self.heads, self.attention = dim, heads, attention
        self.ff_expansion, self.conv_expansion = ff_expansion, conv_expansion
        self.kernel_size, self.dropout, self.zero_glu_pads = kernel_size, dropout, zero_glu_pads
        p = dict(dtype=self.dtype_policy)
        self.mhsa = (RotarySelfAttention(dim, heads, name="mhsa", **p) if attention == "rotary"
                     else RelativeSelfAttention(dim, heads, dropout, name="mhsa", **p))
        self.ff_mhsa = FeedForward(dim, ff_expansion, dropout, name="ff_mhsa", **p)
        self.conv = ConvModule(dim, kernel_size, conv_expansion, dropout,
                               zero_glu_pads=zero_glu_pads, name="conv", **p)
        self.ff_conv = FeedForward(dim, ff_expansion, dropout, name="ff_conv", **p)
        self.norms = {m: keras.layers.LayerNormalization(epsilon=1e-5, name=f"ln_{m}", **p)
                      for m in MODULES}

    def build(self, input_shape):
        for m in MODULES:
            getattr(self, m).build(input_shape)
            self.norms[m].build(input_shape)
        self.scales = {m: self.add_weight(shape=(self.dim,), initializer="ones",
                                          name=f"scale_{m}") for m in MODULES}
        self.biases = {m: self.add_weight(shape=(self.dim,), initializer="zeros",
                                          name=f"bias_{m}") for m in MODULES}

    def call(self, x, frame_mask, training=False):
        for m in MODULES:
            h = x * ops.cast(self.scales[m], x.dtype) + ops.cast(self.biases[m], x.dtype)
            module = getattr(self, m)
            h = module(h, frame_mask, training=training) if m in ("mhsa", "conv") else module(
                h, training=training)
            x = self.norms[m](x + h)
        return x

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads,
                "attention": self.attention, "ff_expansion": self.ff_expansion,
                "conv_expansion": self.conv_expansion, "kernel_size": self.kernel_size,
                "dropout": self.dropout, "zero_glu_pads": self.zero_glu_pads}
