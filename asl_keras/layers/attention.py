"""Encoder self-attention variants of the 1st-place model.

- `RotarySelfAttention` (cfg_2, `mdl_2_pt.py`): Llama-style q/k/v/o projections without bias,
  rotary position embedding (rotate-half, base 10000, `layers/rotary.py`),
  scores / sqrt(head_dim), padded keys masked, softmax in float32, no dropout.
- `RelativeSelfAttention` (cfg_1, `mdl_1_pt.py`): Transformer-XL relative attention as in
  Conformer/Squeezeformer: sinusoidal relative positions, learned u/v biases, the relative
  shift, masked scores -1e9, attention and output dropout.
Shapes: `x [B, T, D]`, `frame_mask [B, T]` -> `[B, T, D]`. Masked scores use a large finite
negative, so fully masked (padded) query rows stay finite.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from asl_keras.layers.rotary import RotaryEmbedding

MASKED = -1e9


def split_heads(x, heads: int):
    """`[B, T, H * Dh]` -> `[B, T, H, Dh]`."""
    b, t = ops.shape(x)[0], ops.shape(x)[1]
    # A static head width (not -1) keeps shapes known when B, T are symbolic (functional models).
    return ops.reshape(x, (b, t, heads, x.shape[-1] // heads))  # [B, T, H, Dh]


def masked_softmax(scores, frame_mask):
    """softmax over keys in float32, padded keys excluded. scores `[B, H, Tq, Tk]`."""
    keep = ops.cast(frame_mask, "bool")[:, None, None, :]
    scores = ops.where(keep, ops.cast(scores, "float32"), MASKED)
    return ops.softmax(scores, axis=-1)


@keras.saving.register_keras_serializable(package="asl_keras")
class RotarySelfAttention(keras.layers.Layer):
    """Multi-head self-attention with rotary positions, as the 1st-place cfg_2 (`mdl_2_pt.py`).

    Llama-style bias-free q/k/v/o projections, rotate-half rotary position embedding (base
    10000, `RotaryEmbedding`), scores / sqrt(head_dim), padded keys masked with a finite
    -1e9, softmax in float32, no dropout. Fully masked (padded) query rows stay finite.

    Args:
        dim: int, model width, the width of every projection; `head_dim = dim // heads` must
            be even (rotary pairs).
        heads: int, number of attention heads.

    Call arguments:
        x: float tensor `[B, T, dim]`.
        frame_mask: `[B, T]`, 1 = real frame, 0 = padding (padded keys get no weight).
        training: bool, unused (there is no dropout); accepted for a common interface.

    Returns:
        `[B, T, dim]`, the compute dtype.
    """

    def __init__(self, dim: int, heads: int, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.heads = dim, heads
        dense = dict(use_bias=False, dtype=self.dtype_policy)
        self.q = keras.layers.Dense(dim, name="q_proj", **dense)
        self.k = keras.layers.Dense(dim, name="k_proj", **dense)
        self.v = keras.layers.Dense(dim, name="v_proj", **dense)
        self.o = keras.layers.Dense(dim, name="o_proj", **dense)
        self.rope = RotaryEmbedding(dtype=self.dtype_policy)

    def build(self, input_shape):
        for layer in (self.q, self.k, self.v, self.o):
            layer.build(input_shape)

    def call(self, x, frame_mask, training=False):
        q = self.rope(split_heads(self.q(x), self.heads))
        k = self.rope(split_heads(self.k(x), self.heads))
        v = split_heads(self.v(x), self.heads)
        scores = ops.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.dim // self.heads)
        attn = ops.cast(masked_softmax(scores, frame_mask), v.dtype)
        out = ops.einsum("bhqk,bkhd->bqhd", attn, v)
        return self.o(ops.reshape(out, ops.shape(x)))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads}


def relative_positions(length, dim: int, max_len: int = 5000):
    """Sinusoidal table for relative positions T-1 ... -(T-1): `[2T-1, D]`.

    Row p encodes relative position `T-1-p` (sin on even, cos on odd channels), the slice of
    Conformer's `RelPositionalEncoding` used for a length-T input.
    """
    rel = ops.cast(length - 1 - ops.arange(2 * length - 1), "float32")[:, None]
    div = ops.exp(ops.arange(0, dim, 2, dtype="float32") * (-math.log(10000.0) / dim))
    angle = rel * div[None, :]
    return ops.reshape(ops.stack([ops.sin(angle), ops.cos(angle)], axis=-1), (-1, dim))


def relative_shift(pos_score):
    """Transformer-XL shift: `[B, H, T, 2T-1]` scores by offset -> `[B, H, T, T]` by key."""
    b, h, t, p = (ops.shape(pos_score)[i] for i in range(4))
    padded = ops.concatenate([ops.zeros_like(pos_score[..., :1]), pos_score], axis=-1)
    padded = ops.reshape(padded, (b, h, p + 1, t))[:, :, 1:]
    return ops.reshape(padded, (b, h, t, p))[..., : p // 2 + 1]


@keras.saving.register_keras_serializable(package="asl_keras")
class RelativeSelfAttention(keras.layers.Layer):
    """Transformer-XL relative multi-head self-attention (Dai et al., 2019), as the 1st-place
    cfg_1 (`mdl_1_pt.py`) and Conformer/Squeezeformer use it.

    Sinusoidal relative positions (`relative_positions`, through a bias-free `pos_proj`),
    learned u/v biases (init 0), the relative shift, scores / sqrt(head_dim), padded keys
    masked with a finite -1e9, softmax in float32. The scale is sqrt(head_dim), not the
    sqrt(d_model) of some Conformer ports: the reference fixtures decide (1.4e-6 vs 1.9e-2
    error).

    Args:
        dim: int, model width, the width of every projection (`head_dim = dim // heads`).
        heads: int, number of attention heads.
        dropout: float, rate of the dropout on the attention probabilities and on the output.
            Defaults to `0.1`.

    Call arguments:
        x: float tensor `[B, T, dim]`.
        frame_mask: `[B, T]`, 1 = real frame, 0 = padding (padded keys get no weight).
        training: bool, whether the dropouts are applied.

    Returns:
        `[B, T, dim]`, the compute dtype.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.heads, self.dropout = dim, heads, dropout
        dense = dict(dtype=self.dtype_policy)
        self.q = keras.layers.Dense(dim, name="query_proj", **dense)
        self.k = keras.layers.Dense(dim, name="key_proj", **dense)
        self.v = keras.layers.Dense(dim, name="value_proj", **dense)
        self.pos = keras.layers.Dense(dim, use_bias=False, name="pos_proj", **dense)
        self.o = keras.layers.Dense(dim, name="out_proj", **dense)
        self.attn_drop = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.out_drop = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        for layer in (self.q, self.k, self.v, self.pos, self.o):
            layer.build(input_shape)
        head_dim = self.dim // self.heads
        self.u_bias = self.add_weight(shape=(self.heads, head_dim), initializer="zeros",
                                      name="u_bias")
        self.v_bias = self.add_weight(shape=(self.heads, head_dim), initializer="zeros",
                                      name="v_bias")

    def call(self, x, frame_mask, training=False):
        q = split_heads(self.q(x), self.heads)
        k = split_heads(self.k(x), self.heads)
        v = split_heads(self.v(x), self.heads)
        pos = self.pos(ops.cast(relative_positions(ops.shape(x)[1], self.dim), x.dtype))
        pos = ops.reshape(pos, (-1, self.heads, self.dim // self.heads))  # [2T-1, H, Dh]
        content = ops.einsum("bqhd,bkhd->bhqk", q + ops.cast(self.u_bias, q.dtype), k)
        by_offset = ops.einsum("bqhd,phd->bhqp", q + ops.cast(self.v_bias, q.dtype), pos)
        scores = (content + relative_shift(by_offset)) / math.sqrt(self.dim // self.heads)
        attn = self.attn_drop(ops.cast(masked_softmax(scores, frame_mask), v.dtype),
                              training=training)
        out = ops.einsum("bhqk,bkhd->bqhd", attn, v)
        return self.out_drop(self.o(ops.reshape(out, ops.shape(x))), training=training)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads,
                "dropout": self.dropout}
