"""The position-wise feed-forward module that both encoder blocks use.

Linear(d, h) -> activation -> dropout -> Linear(h, d) -> dropout, biases on, h = `hidden_dim`
or `d * expansion`. The Squeezeformer block uses it with Swish and expansion 1, as the 1st
place does; the Zipformer block gives each of its three FFNs its own hidden width and SwooshL.
Shapes `[..., d]` -> `[..., d]`.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="asl_keras")
class FeedForward(keras.layers.Layer):
    """The Squeezeformer/1st-place position-wise feed-forward module, shared by both blocks.

    Linear(d, h) -> Swish -> dropout -> Linear(h, d) -> dropout, biases on, h = hidden_dim or
    d*e.

    Args:
        dim: int, input and output width `d`.
        expansion: int, hidden width `e * d` when `hidden_dim` is not given. Defaults to `1`
            (the 1st place's).
        dropout: float, rate of both dropouts. Defaults to `0.1`.
        hidden_dim: int or `None`, hidden width; `None` means `dim * expansion`. Defaults to
            `None`.
        activation: hidden activation, a name or callable; replaces the Swish (the Zipformer
            block uses SwooshL). Defaults to `"silu"`.

    Call arguments:
        x: float tensor `[..., dim]`.
        training: bool, whether the dropouts are applied.

    Returns:
        `[..., dim]`.
    """

    def __init__(self, dim: int, expansion: int = 1, dropout: float = 0.1,
                 hidden_dim: int | None = None, activation="silu", **kwargs):
        super().__init__(**kwargs)
        self.dim, self.expansion, self.dropout = dim, expansion, dropout
        self.hidden_dim = hidden_dim or dim * expansion
        self.activation = keras.activations.get(activation)
        self.ffn1 = keras.layers.Dense(self.hidden_dim, name="ffn1", dtype=self.dtype_policy)
        self.ffn2 = keras.layers.Dense(dim, name="ffn2", dtype=self.dtype_policy)
        self.drop1 = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.drop2 = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        self.ffn1.build(input_shape)
        self.ffn2.build((*input_shape[:-1], self.hidden_dim))

    def call(self, x, training=False):
        h = self.drop1(self.activation(self.ffn1(x)), training=training)
        return self.drop2(self.ffn2(h), training=training)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "expansion": self.expansion,
                "dropout": self.dropout, "hidden_dim": self.hidden_dim,
                "activation": keras.activations.serialize(self.activation)}
