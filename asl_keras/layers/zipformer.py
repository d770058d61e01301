"""Zipformer pieces for the 1st-place encoder (docs/zipformer.md).

The block keeps what the 1st-place model does well on this task (RoPE attention with
`dim / heads` head width, the Squeezeformer conv module with masked BatchNorm, kernel 51) and
adds Zipformer's structure: one attention-weight computation shared by NonlinAttention and two
value-only attentions, three FFNs with SwooshL, SwooshR in the conv modules, a mid-block Bypass,
BiasNorm and an end Bypass with per-sequence layer skip.

Schedules (`ScheduledFloat`) are evaluated at the `step` argument of `call` (the optimizer
update, passed down by the encoder; `None` = inference). Their default points are icefall's,
counted in its batches, which are optimizer updates too; a run of another length may need other
points (they are constructor args) or the encoder's `schedule_scale`.
Stochastic skips draw one number per *sequence* (batch axis 0 of `[B, T, C]`), never per frame,
and are off at inference. Bypass scales and BiasNorm's log-scale are kept in range as in
icefall: the forward uses them as they are, in training and at inference alike, and in training
a gradient-only penalty (`constraints.limit`, icefall's limit_param_value, on 60 % of the calls)
turns back gradients that would push them further out of range; the Bypass schedule moves only
the penalty's lower bound. So every validation scores the network being trained. With
`constraints=True` the block output gets icefall's gradient-only regularisers (Balancer ->
BiasNorm -> Bypass -> Balancer -> Whitener, the end of icefall's layer).

Deviations from icefall's Zipformer2: RoPE attention instead of relative positions; the
1st-place Squeezeformer conv module (masked BatchNorm, kernel 51) and per-module input scale
and bias; an `eps` in BiasNorm; the module-internal balancers, const-attention and
ScaledAdam-specific initial scales are not used.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from asl_keras.layers.attention import masked_softmax, split_heads
from asl_keras.layers.constraints import Balancer, Whitener, limit
from asl_keras.layers.conv_module import ConvModule
from asl_keras.layers.feed_forward import FeedForward
from asl_keras.layers.masking import zero_pads
from asl_keras.layers.rotary import RotaryEmbedding
from asl_keras.layers.scheduled import ScheduledFloat

# icefall's defaults (Zipformer2EncoderLayer, BypassModule), steps in its batches.
BYPASS_SCALE_MIN = ((0.0, 0.9), (20000.0, 0.2))
ATTENTION_SKIP_RATE = ((0.0, 0.2), (4000.0, 0.05), (16000.0, 0.0))
CONV_SKIP_RATE = ((0.0, 0.2), (4000.0, 0.05), (16000.0, 0.0))
FF_SKIP_RATE = ((0.0, 0.1), (4000.0, 0.01), (50000.0, 0.0))
LAYER_SKIP_RATE = ((0.0, 0.5), (4000.0, 0.02))

# cfg_2 sizing (configs/cfg_2.yaml): 7 blocks (each has two attentions and two convs, so 14 of
# each like the 14 Squeezeformer blocks) at dim 208 with FFN widths (3/4, 1, 5/4) x 208, i.e. the
# 1st-place expansion 1 on average. Encoder: 7 x 938,965 = 6,572,755 <= 6,883,968 params of the
# 1st place.
CFG2_FFN_DIMS = (156, 208, 260)

MODULES = ("attn_weights", "ffn1", "nla", "sa1", "conv1", "ffn2", "sa2", "conv2", "ffn3")


def _softplus(x):
    # log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): no overflow for any x, elementwise builtins only.
    return ops.relu(x) + ops.log(1.0 + ops.exp(-ops.abs(x)))


@keras.saving.register_keras_serializable(package="asl_keras")
def swoosh_l(x):
    """SwooshL(x) = log(1 + e^(x-4)) - 0.08 x - 0.035, in float32."""
    x32 = ops.cast(x, "float32")
    return ops.cast(_softplus(x32 - 4.0) - 0.08 * x32 - 0.035, x.dtype)


@keras.saving.register_keras_serializable(package="asl_keras")
def swoosh_r(x):
    """SwooshR(x) = log(1 + e^(x-1)) - 0.08 x - 0.313261687, so SwooshR(0) = 0.

    float32 because in float16 the offset would not cancel log(1 + e^-1) at 0.
    """
    x32 = ops.cast(x, "float32")
    return ops.cast(_softplus(x32 - 1.0) - 0.08 * x32 - 0.313261687, x.dtype)


@keras.saving.register_keras_serializable(package="asl_keras")
class SwooshL(keras.layers.Layer):
    """Zipformer's SwooshL activation (Yao et al., 2023), the layer form of `swoosh_l`.

    SwooshL(x) = log(1 + e^(x-4)) - 0.08 x - 0.035, computed in float32. Slope -0.08 at -inf,
    0.92 at +inf.

    Args:
        None beyond Keras' own (`name`, `dtype`, ...).

    Call arguments:
        x: float tensor of any shape.

    Returns:
        SwooshL(x), the shape and dtype of `x`.
    """

    def call(self, x):
        return swoosh_l(x)


@keras.saving.register_keras_serializable(package="asl_keras")
class SwooshR(keras.layers.Layer):
    """Zipformer's SwooshR activation (Yao et al., 2023), the layer form of `swoosh_r`.

    SwooshR(x) = log(1 + e^(x-1)) - 0.08 x - 0.313261687 (so SwooshR(0) = 0), computed in
    float32. Slope -0.08 at -inf, 0.92 at +inf.

    Args:
        None beyond Keras' own (`name`, `dtype`, ...).

    Call arguments:
        x: float tensor of any shape.

    Returns:
        SwooshR(x), the shape and dtype of `x`.
    """

    def call(self, x):
        return swoosh_r(x)


def sequence_keep_mask(x, rate: ScheduledFloat, step, seed_generator):
    """`[B, 1, 1]` mask of x `[B, T, C]`: 0 for sequences skipped with probability rate(step).

    One draw per sequence along batch axis 0 (the fork used axis 1, i.e. dropped time steps).
    `None` when the schedule is 0 throughout, so no random op is built.
    """
    if rate.max <= 0.0:
        return None
    draw = keras.random.uniform((ops.shape(x)[0], 1, 1), seed=seed_generator)
    return ops.cast(draw >= rate.value(step), x.dtype)


@keras.saving.register_keras_serializable(package="asl_keras")
class BiasNorm(keras.layers.Layer):
    """icefall's Zipformer2 BiasNorm: y = x / RMS_c(x - b) * exp(gamma) per frame over channels.

    b: per-channel bias (init 0) that only enters the RMS; gamma: scalar log-scale (init 1.0),
    used as it is; in training a gradient-only penalty (`constraints.limit`) pushes it back
    into `[-log_scale_limit, log_scale_limit]`. Computed in float32; `eps` keeps all-zero
    frames finite (icefall has none).

    Args:
        log_scale_limit: float, bound of the range gamma is kept in. Defaults to `1.5`.
        eps: float, added to the mean square. Defaults to `1e-5`.

    Call arguments:
        x: float tensor `[..., C]`.
        training: bool, whether the penalty is applied.

    Returns:
        `[..., C]`, the dtype of `x`.
    """

    def __init__(self, log_scale_limit: float = 1.5, eps: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.log_scale_limit, self.eps = log_scale_limit, eps
        self.seed_generator = keras.random.SeedGenerator()

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias",
                                    autocast=False)
        self.log_scale = self.add_weight(shape=(), initializer=keras.initializers.Constant(1.0),
                                         name="log_scale", autocast=False)

    def call(self, x, training=False):
        x32 = ops.cast(x, "float32")
        mean_square = ops.mean(ops.square(x32 - self.bias), axis=-1, keepdims=True)
        log_scale = self.log_scale
        if training:
            log_scale = limit(log_scale, -self.log_scale_limit, self.log_scale_limit,
                              self.seed_generator)
        return ops.cast(x32 * ops.rsqrt(mean_square + self.eps) * ops.exp(log_scale), x.dtype)

    def get_config(self):
        return {**super().get_config(), "log_scale_limit": self.log_scale_limit, "eps": self.eps}


@keras.saving.register_keras_serializable(package="asl_keras")
class Bypass(keras.layers.Layer):
    """icefall's Zipformer2 BypassModule: out = x0 + c * (x - x0) with per-channel c (init 0.5).

    c is used as it is, in training and at inference alike. In training a gradient-only
    penalty (`constraints.limit`) pushes it back into `[scale_min(step), 1]`, and
    `skip_rate(step)` is the probability that a sequence gets c = 0, i.e. out = x0 (layer skip).

    Args:
        scale_min: schedule (`(step, value)` points, a constant or a `ScheduledFloat`) of the
            penalty's lower bound. Defaults to icefall's `((0, 0.9), (20000, 0.2))`.
        skip_rate: schedule (or constant) of the per-sequence skip probability. Defaults to
            `0.0` (no skip).

    Call arguments:
        x0: float tensor `[B, T, C]`, the input of the bypassed modules.
        x: float tensor `[B, T, C]`, their output.
        step: optimizer update the schedules are read at (`None`: their final values).
        training: bool, whether the penalty and the skips are applied.

    Returns:
        `[B, T, C]`.
    """

    def __init__(self, scale_min=BYPASS_SCALE_MIN, skip_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale_min = ScheduledFloat.of(scale_min)
        self.skip_rate = ScheduledFloat.of(skip_rate)
        self.seed_generator = keras.random.SeedGenerator()

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), name="bypass_scale",
                                     initializer=keras.initializers.Constant(0.5),
                                     autocast=False)

    def call(self, x0, x, step=None, training=False):
        scale = self.scale
        if training:
            scale = limit(scale, self.scale_min.value(step), 1.0, self.seed_generator)
            keep = sequence_keep_mask(x0, self.skip_rate, step, self.seed_generator)
            scale = scale if keep is None else ops.cast(keep, scale.dtype) * scale
        return x0 + ops.cast(scale, x.dtype) * (x - x0)

    def get_config(self):
        return {**super().get_config(), "scale_min": self.scale_min.to_list(),
                "skip_rate": self.skip_rate.to_list()}


@keras.saving.register_keras_serializable(package="asl_keras")
class AttentionWeights(keras.layers.Layer):
    """Multi-head attention weights, computed once per block and shared (icefall's Zipformer2
    `RelPositionMultiheadAttentionWeights`, MHAW).

    W[b, h] = softmax_k(RoPE(x Wq_h) RoPE(x Wk_h)^T / sqrt(head_dim)) over real keys: bias-free
    q/k projections and rotary positions as in `RotarySelfAttention` (icefall uses relative
    positions instead). Softmax in float32.

    Args:
        heads: int, number of heads `H`.
        head_dim: int, query/key width per head (even, for the rotary pairs).

    Call arguments:
        x: float tensor `[B, T, C]`.
        frame_mask: `[B, T]`, 1 = real frame, 0 = padding (padded keys get weight 0).

    Returns:
        float32 `[B, H, T, T]`, rows summing to 1 over keys; rows of padded queries stay finite.
    """

    def __init__(self, heads: int, head_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.head_dim = heads, head_dim
        dense = dict(use_bias=False, dtype=self.dtype_policy)
        self.q = keras.layers.Dense(heads * head_dim, name="q_proj", **dense)
        self.k = keras.layers.Dense(heads * head_dim, name="k_proj", **dense)
        self.rope = RotaryEmbedding(dtype=self.dtype_policy)

    def build(self, input_shape):
        self.q.build(input_shape)
        self.k.build(input_shape)

    def call(self, x, frame_mask):
        q = self.rope(split_heads(self.q(x), self.heads))
        k = self.rope(split_heads(self.k(x), self.heads))
        scores = ops.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(self.head_dim)
        return masked_softmax(scores, frame_mask)

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "head_dim": self.head_dim}


@keras.saving.register_keras_serializable(package="asl_keras")
class ValueAttention(keras.layers.Layer):
    """Self-attention with given weights (icefall's Zipformer2 `SelfAttention`, SA):
    out = Wo concat_h(W[:, h] (x Wv_h)).

    Bias-free value/output projections (as the 1st-place attention).

    Args:
        dim: int, output width.
        heads: int, number of heads `H`, as in the weights.
        head_dim: int, value width per head.

    Call arguments:
        x: float tensor `[B, T, C]`.
        attn_weights: `[B, H, T, T]`, from `AttentionWeights`.

    Returns:
        `[B, T, dim]`.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.heads, self.head_dim = dim, heads, head_dim
        dense = dict(use_bias=False, dtype=self.dtype_policy)
        self.v = keras.layers.Dense(heads * head_dim, name="v_proj", **dense)
        self.o = keras.layers.Dense(dim, name="o_proj", **dense)

    def build(self, input_shape):
        self.v.build(input_shape)
        self.o.build((*input_shape[:-1], self.heads * self.head_dim))

    def call(self, x, attn_weights):
        v = split_heads(self.v(x), self.heads)
        out = ops.einsum("bhqk,bkhd->bqhd", ops.cast(attn_weights, v.dtype), v)
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        return self.o(ops.reshape(out, (b, t, self.heads * self.head_dim)))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads,
                "head_dim": self.head_dim}


@keras.saving.register_keras_serializable(package="asl_keras")
class NonlinAttention(keras.layers.Layer):
    """icefall's Zipformer2 `NonlinAttention` (NLA):
    out = Wo (A * (W (tanh(B) * C))) + bo, [B; C; A] = Win x + bin.

    Plain Dense projections with bias.

    Args:
        dim: int, input and output width.
        hidden_dim: int, width of A, B and C (3/4 of dim in Zipformer).

    Call arguments:
        x: float tensor `[B, T, dim]`.
        attn_weights: W `[B, T, T]`, one head of the shared attention weights.

    Returns:
        `[B, T, dim]`.
    """

    def __init__(self, dim: int, hidden_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.hidden_dim = dim, hidden_dim
        self.in_proj = keras.layers.Dense(3 * hidden_dim, name="in_proj", dtype=self.dtype_policy)
        self.out_proj = keras.layers.Dense(dim, name="out_proj", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.in_proj.build(input_shape)
        self.out_proj.build((*input_shape[:-1], self.hidden_dim))

    def call(self, x, attn_weights):
        gate, value, out_gate = ops.split(self.in_proj(x), 3, axis=-1)
        mixed = ops.matmul(ops.cast(attn_weights, value.dtype), ops.tanh(gate) * value)
        return self.out_proj(out_gate * mixed)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "hidden_dim": self.hidden_dim}


def _add(x, h, keep):
    """Residual add; `keep` `[B, 1, 1]` (or None) drops the module for skipped sequences."""
    return x + (h if keep is None else h * keep)


@keras.saving.register_keras_serializable(package="asl_keras")
class ZipformerBlock(keras.layers.Layer):
    """Zipformer block (Yao et al., 2023): icefall's Zipformer2EncoderLayer with RoPE attention
    and the 1st-place Squeezeformer conv modules (docs/zipformer.md, 'The block').

        W  = AttentionWeights(x0)                    # [B, H, T, T], shared
        x  = x0 + FFN1(x0);  x += NLA(x, W[:, 0]);  x += SA1(x, W);  x += Conv1(x)
        x += FFN2(x);  x = Bypass_mid(x0, x)
        x += SA2(x, W);  x += Conv2(x);  x += FFN3(x)
        out = Bypass_end(x0, BiasNorm(x))            # carries the per-sequence layer skip

    Each module input is first scaled and shifted per channel (learned, init 1 and 0), as in
    the 1st-place block: it costs 2*dim per module and gives AdamW (without ScaledAdam's learned
    parameter scales) a per-module input gain; at init it is the identity. FFNs use SwooshL,
    conv modules SwooshR. In training, NLA+SA1+SA2 share one per-sequence skip draw
    (`attention_skip_rate`), each conv and FFN2/FFN3 draw their own. Padded frames are zeroed
    on input (they enter attention sums with weight 0, so must be finite) and on output.

    Args:
        dim: int, model width. Defaults to `208` (cfg_2).
        heads: int, attention heads. Defaults to `4`.
        ffn_dims: three ints, hidden widths of FFN1, FFN2 and FFN3. Defaults to cfg_2's
            `(156, 208, 260)`, (3/4, 1, 5/4) x 208.
        kernel_size: int, depthwise kernel of both conv modules. Defaults to `51`.
        head_dim: int or `None`, query/key/value width per head; `None` means `dim // heads`.
            Defaults to `None`.
        nla_dim: int or `None`, hidden width of NonlinAttention; `None` means `3 * dim // 4`.
            Defaults to `None`.
        dropout: float, dropout of the FFNs and conv modules. Defaults to `0.1`.
        attention_skip_rate: schedule (`(step, value)` points, a constant or a
            `ScheduledFloat`) of the per-sequence skip probability shared by NLA, SA1 and SA2.
            Defaults to icefall's `((0, 0.2), (4000, 0.05), (16000, 0))`.
        conv_skip_rate: schedule of each conv module's skip probability. Defaults to icefall's
            `((0, 0.2), (4000, 0.05), (16000, 0))`.
        ff_skip_rate: schedule of the FFN2 and FFN3 skip probabilities. Defaults to icefall's
            `((0, 0.1), (4000, 0.01), (50000, 0))`.
        layer_skip_rate: schedule of the per-sequence layer skip (end Bypass). Defaults to
            icefall's `((0, 0.5), (4000, 0.02))`.
        bypass_scale_min: schedule of the lower bound of both Bypass scales. Defaults to
            icefall's `((0, 0.9), (20000, 0.2))`.
        constraints: bool, add icefall's gradient-only Balancer -> BiasNorm -> Bypass ->
            Balancer -> Whitener sequence at the block output (`balancer1`, `balancer2` and
            `whiten` of `Zipformer2EncoderLayer`). Defaults to `False`.

    Call arguments:
        x: float tensor `[B, T, dim]`.
        frame_mask: `[B, T]`, 1 = real frame, 0 = padding.
        step: optimizer update the schedules are read at (`None`: their final values).
        training: bool, skips, dropouts, constraints and penalties on.

    Returns:
        `[B, T, dim]`, padded frames 0.
    """

    def __init__(self, dim: int = 208, heads: int = 4, ffn_dims=CFG2_FFN_DIMS,
                 kernel_size: int = 51, head_dim: int | None = None,
                 nla_dim: int | None = None, dropout: float = 0.1,
                 attention_skip_rate=ATTENTION_SKIP_RATE, conv_skip_rate=CONV_SKIP_RATE,
                 ff_skip_rate=FF_SKIP_RATE, layer_skip_rate=LAYER_SKIP_RATE,
                 bypass_scale_min=BYPASS_SCALE_MIN, constraints: bool = False, **kwargs):
        super().__init__(**kwargs)
        if len(ffn_dims) != 3:
            raise ValueError(f"ffn_dims needs 3 hidden sizes, got {ffn_dims!r}")
        self.dim, self.heads, self.kernel_size, self.dropout = dim, heads, kernel_size, dropout
        self.ffn_dims = tuple(ffn_dims)
        self.head_dim = head_dim or dim // heads
        self.nla_dim = nla_dim or 3 * dim // 4
        self.attention_skip_rate = ScheduledFloat.of(attention_skip_rate)
        self.conv_skip_rate = ScheduledFloat.of(conv_skip_rate)
        self.ff_skip_rate = ScheduledFloat.of(ff_skip_rate)
        self.layer_skip_rate = ScheduledFloat.of(layer_skip_rate)
        self.bypass_scale_min = ScheduledFloat.of(bypass_scale_min)
        p = dict(dtype=self.dtype_policy)
        self.attn_weights = AttentionWeights(heads, self.head_dim, name="attn_weights", **p)
        for name, hidden in zip(("ffn1", "ffn2", "ffn3"), self.ffn_dims, strict=True):
            setattr(self, name, FeedForward(dim, dropout=dropout, hidden_dim=hidden,
                                            activation=swoosh_l, name=name, **p))
        self.nla = NonlinAttention(dim, self.nla_dim, name="nla", **p)
        self.sa1 = ValueAttention(dim, heads, self.head_dim, name="sa1", **p)
        self.sa2 = ValueAttention(dim, heads, self.head_dim, name="sa2", **p)
        self.conv1 = ConvModule(dim, kernel_size, dropout=dropout, activation=swoosh_r,
                                zero_glu_pads=True, name="conv1", **p)
        self.conv2 = ConvModule(dim, kernel_size, dropout=dropout, activation=swoosh_r,
                                zero_glu_pads=True, name="conv2", **p)
        self.bypass_mid = Bypass(self.bypass_scale_min, name="bypass_mid", **p)
        self.norm = BiasNorm(name="norm", **p)
        self.bypass_end = Bypass(self.bypass_scale_min, self.layer_skip_rate, name="bypass_end",
                                 **p)
        self.constraints = constraints
        if constraints:  # icefall Zipformer2EncoderLayer's balancer1, balancer2 and whiten
            self.balancer_in = Balancer(0.45, 0.55, min_abs=0.2, max_abs=4.0,
                                        name="balancer_in", **p)
            self.balancer_out = Balancer(0.45, 0.55, min_abs=0.1, max_abs=4.0,
                                         name="balancer_out", **p)
            self.whitener = Whitener(((0.0, 4.0), (20000.0, 12.0)), prob=0.25,
                                     name="whitener", **p)
        self.seed_generator = keras.random.SeedGenerator()

    def build(self, input_shape):
        for m in (*MODULES, "bypass_mid", "norm", "bypass_end"):
            getattr(self, m).build(input_shape)
        self.scales = {m: self.add_weight(shape=(self.dim,), initializer="ones",
                                          name=f"scale_{m}") for m in MODULES}
        self.biases = {m: self.add_weight(shape=(self.dim,), initializer="zeros",
                                          name=f"bias_{m}") for m in MODULES}

    def _module_input(self, m, x):
        return x * ops.cast(self.scales[m], x.dtype) + ops.cast(self.biases[m], x.dtype)

    def call(self, x, frame_mask, step=None, training=False):
        x0 = zero_pads(x, frame_mask)
        inp = self._module_input
        keep = dict.fromkeys(("attn", "conv1", "conv2", "ffn2", "ffn3"))
        if training:
            rates = {"attn": self.attention_skip_rate, "conv1": self.conv_skip_rate,
                     "conv2": self.conv_skip_rate, "ffn2": self.ff_skip_rate,
                     "ffn3": self.ff_skip_rate}
            keep = {k: sequence_keep_mask(x0, r, step, self.seed_generator)
                    for k, r in rates.items()}
        weights = self.attn_weights(inp("attn_weights", x0), frame_mask)
        x = x0 + self.ffn1(inp("ffn1", x0), training=training)
        x = _add(x, self.nla(inp("nla", x), weights[:, 0]), keep["attn"])
        x = _add(x, self.sa1(inp("sa1", x), weights), keep["attn"])
        x = _add(x, self.conv1(inp("conv1", x), frame_mask, training=training), keep["conv1"])
        x = _add(x, self.ffn2(inp("ffn2", x), training=training), keep["ffn2"])
        x = self.bypass_mid(x0, x, step=step, training=training)
        x = _add(x, self.sa2(inp("sa2", x), weights), keep["attn"])
        x = _add(x, self.conv2(inp("conv2", x), frame_mask, training=training), keep["conv2"])
        x = _add(x, self.ffn3(inp("ffn3", x), training=training), keep["ffn3"])
        if self.constraints:
            x = self.balancer_in(x, step=step, training=training)
        x = self.bypass_end(x0, self.norm(x, training=training), step=step, training=training)
        if self.constraints:
            x = self.balancer_out(x, step=step, training=training)
            x = self.whitener(x, frame_mask, step=step, training=training)
        return zero_pads(x, frame_mask)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads,
                "ffn_dims": list(self.ffn_dims), "kernel_size": self.kernel_size,
                "head_dim": self.head_dim, "nla_dim": self.nla_dim, "dropout": self.dropout,
                "attention_skip_rate": self.attention_skip_rate.to_list(),
                "conv_skip_rate": self.conv_skip_rate.to_list(),
                "ff_skip_rate": self.ff_skip_rate.to_list(),
                "layer_skip_rate": self.layer_skip_rate.to_list(),
                "bypass_scale_min": self.bypass_scale_min.to_list(),
                "constraints": self.constraints}
