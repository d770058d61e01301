"""Squeezeformer convolution module (the 1st place's `ConvModule`, docs/reference.md).

zero pads -> pointwise d -> 2d (+bias) -> GLU (first half value, second half gate) ->
depthwise conv k (zero 'same' padding, no bias) -> BatchNorm on real frames only -> Swish ->
pointwise d -> d (+bias) -> dropout -> zero pads. Shapes `[B, T, D]`, mask `[B, T]`.
`activation` replaces the Swish (the Zipformer block uses SwooshR). The reference lets
pw_conv_1's bias reach the depthwise conv at padded frames, so the last kernel_size//2 real
frames depend on the amount of padding; `zero_glu_pads=True` zeroes pads after the GLU and
makes real frames padding-independent (off by default for parity).
"""

from __future__ import annotations

import keras
from keras import ops

from asl_keras.layers.masking import zero_pads


@keras.saving.register_keras_serializable(package="asl_keras")
class ConvModule(keras.layers.Layer):
    """Squeezeformer convolution module (Kim et al., 2022), as the 1st place's `ConvModule`.

    zero pads -> pointwise dim -> dim * expansion (+bias) -> GLU (first half value, second half
    gate) -> depthwise conv `kernel_size` (zero 'same' padding, no bias) -> BatchNorm on real
    frames only (momentum 0.9, epsilon 1e-5) -> Swish -> pointwise -> dim (+bias) -> dropout ->
    zero pads. The reference lets pw_conv_1's bias reach the depthwise conv at padded frames,
    so the last kernel_size//2 real frames depend on the amount of padding (docs/reference.md,
    'Squeezeformer encoder').

    Args:
        dim: int, input and output width.
        kernel_size: int, depthwise convolution kernel along time. Defaults to `51`.
        expansion: int, width of the first pointwise layer as a multiple of `dim`; the GLU
            halves it. Defaults to `2`.
        dropout: float, dropout rate after the last pointwise layer. Defaults to `0.1`.
        activation: activation after the BatchNorm, a name or callable; replaces the Swish
            (the Zipformer block uses SwooshR). Defaults to `"silu"`.
        zero_glu_pads: bool, zero padded frames after the GLU, which makes real frames
            padding-independent. Defaults to `False` (the reference's leak, for parity).

    Call arguments:
        x: float tensor `[B, T, dim]`.
        frame_mask: `[B, T]`, 1 = real frame, 0 = padding.
        training: bool, dropout on and BatchNorm from batch statistics (real frames only).

    Returns:
        `[B, T, dim]`, padded frames 0.
    """

    def __init__(self, dim: int, kernel_size: int = 51, expansion: int = 2,
                 dropout: float = 0.1, activation="silu", zero_glu_pads: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.dim, self.kernel_size, self.expansion, self.dropout = (dim, kernel_size, expansion,
                                                                    dropout)
        self.activation = keras.activations.get(activation)
        self.zero_glu_pads = zero_glu_pads
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
        h = value * ops.sigmoid(gate)
        h = self.dw(zero_pads(h, frame_mask) if self.zero_glu_pads else h)
        h = self.bn(h, training=training, mask=ops.cast(frame_mask, "bool"))
        h = self.drop(self.pw2(self.activation(h)), training=training)
        return zero_pads(h, frame_mask)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "kernel_size": self.kernel_size,
                "expansion": self.expansion, "dropout": self.dropout,
                "activation": keras.activations.serialize(self.activation),
                "zero_glu_pads": self.zero_glu_pads}
