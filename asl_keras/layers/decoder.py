"""The 1st-place character decoder: HF `Speech2TextDecoder` (pre-LN) + untied `lm_head`.

Reference: transformers 4.32.1 `Speech2TextDecoder` as the 1st place configures it; its quirks
and what is kept of them: docs/reference.md, 'Decoder' and 'Losses'.

- `ReferenceDecoder(tokens [B, L], encoder_output [B, T, d], encoder_mask [B, T])` -> float32
  logits `[B, L, VOCAB_SIZE]` (teacher forcing, causal self-attention, no token padding mask).
- `ReferenceDecoder.init_cache` / `.step`: one token at a time with a fixed-size KV cache.
- `greedy_decode` (cached, `keras.ops.while_loop`) and `uncached_greedy_decode` (re-runs the
  whole prefix each step, like the reference's `Decoder.generate`); both average the logits of
  several decoders for ensembles.
- Loss helpers: `shift_right`, `sequence_cross_entropy` (per sample), `backward_targets`,
  `flip_time` (the backward decoder of cfg_2).

Why not `keras_hub.layers.TransformerDecoder`: it reproduces the fixture logits (measured max
abs error 1.3e-6 after mapping the weights), but it has a single `dropout` shared by attention
probabilities and residual branches, while the reference trains with attention dropout 0.2 and
residual dropout 0.1; and it has no hook for the reference's PAD-offset positions in cached
decoding. Owning the few lines also keeps the weight layout a plain transpose of PyTorch's.

Masked attention scores are a finite -1e9 in float32 (the reference fills with the dtype
minimum), so fully masked rows (e.g. an all-padding encoder) give a uniform, finite softmax.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from asl_keras.vocab import EOS, LABEL_LEN, PAD, SOS, VOCAB_SIZE

MASKED = -1e9
IGNORE_INDEX = -100  # the reference's CrossEntropyLoss(ignore_index=-100); labels never use it


def _hf_init():
    """HF `_init_weights` for decoder Linear/Embedding weights: N(0, init_std=0.02)."""
    return keras.initializers.RandomNormal(stddev=0.02)


def position_ids(tokens):
    """fairseq/HF positions `[B, L]`: PAD + running count of non-PAD tokens; PAD tokens -> PAD."""
    real = ops.cast(ops.not_equal(tokens, PAD), "int32")
    return ops.cumsum(real, axis=1) * real + PAD


def sinusoidal_positions(ids, dim: int):
    """float32 `[..., dim]` rows of the fairseq table for integer position `ids`.

    Same float32 formula as `Speech2TextSinusoidalPositionalEmbedding.get_embedding` (sin half,
    then cos half, frequency step log(10000) / (dim/2 - 1), row PAD zero). Computed on the fly
    instead of stored: the table has no trainable state and a [1026, d] constant would bloat
    the TFLite file; positions past the table's end get what the reference's regrown table has.
    """
    half = dim // 2
    freq = ops.exp(ops.arange(half, dtype="float32") * -(math.log(10000.0) / (half - 1)))
    angle = ops.cast(ids, "float32")[..., None] * freq
    table = [ops.sin(angle), ops.cos(angle)]
    if dim % 2:
        table.append(ops.zeros_like(angle[..., :1]))
    emb = ops.concatenate(table, axis=-1)
    return ops.where(ops.equal(ids, PAD)[..., None], 0.0, emb)


@keras.saving.register_keras_serializable(package="asl_keras")
class DecoderAttention(keras.layers.Layer):
    """HF `Speech2TextAttention`: q/k/v/out Linear with bias, q scaled by head_dim^-0.5.

    Keys/values come from `keys_values(source [B, S, d])`, so a caller can cache them.
    Softmax in float32 (masked scores a finite -1e9), then attention dropout. Weights are
    initialised N(0, 0.02) as HF's `_init_weights`.

    Args:
        d_model: int, model width `d`; must be divisible by `num_heads`.
        num_heads: int, number of heads `H` (head width `hd = d_model // num_heads`).
        dropout: float, dropout rate on the attention probabilities. Defaults to `0.0`.

    Call arguments:
        x: float tensor `[B, L, d]`, the queries' source.
        keys, values: `[B, H, S, hd]`, from `keys_values`.
        attention_mask: bool, broadcasts to `[B, H, L, S]`, True = attend.
        training: bool, whether the attention dropout is applied.

    Returns:
        `[B, L, d]`.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if d_model % num_heads:
            raise ValueError(f"d_model {d_model} is not divisible by num_heads {num_heads}")
        self.d_model, self.num_heads, self.dropout = d_model, num_heads, dropout
        self.head_dim = d_model // num_heads
        dense = dict(kernel_initializer=_hf_init(), dtype=self.dtype_policy)
        self.q_proj = keras.layers.Dense(d_model, name="q_proj", **dense)
        self.k_proj = keras.layers.Dense(d_model, name="k_proj", **dense)
        self.v_proj = keras.layers.Dense(d_model, name="v_proj", **dense)
        self.out_proj = keras.layers.Dense(d_model, name="out_proj", **dense)
        self.attn_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape=None):
        for dense in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            dense.build((None, self.d_model))

    def _split(self, x):
        b = ops.shape(x)[0]
        return ops.transpose(ops.reshape(x, (b, -1, self.num_heads, self.head_dim)), (0, 2, 1, 3))

    def keys_values(self, source):
        """Projected keys and values `[B, H, S, hd]` of `source [B, S, d]`."""
        return self._split(self.k_proj(source)), self._split(self.v_proj(source))

    def call(self, x, keys, values, attention_mask, training=None):
        q = self._split(self.q_proj(x) * (self.head_dim**-0.5))
        scores = ops.cast(ops.matmul(q, ops.transpose(keys, (0, 1, 3, 2))), "float32")
        probs = ops.softmax(ops.where(attention_mask, scores, MASKED), axis=-1)
        probs = self.attn_dropout(ops.cast(probs, values.dtype), training=training)
        out = ops.transpose(ops.matmul(probs, values), (0, 2, 1, 3))
        return self.out_proj(ops.reshape(out, (ops.shape(x)[0], -1, self.d_model)))

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "dropout": self.dropout}


@keras.saving.register_keras_serializable(package="asl_keras")
class DecoderLayer(keras.layers.Layer):
    """HF `Speech2TextDecoderLayer`, pre-LN: self-attn, cross-attn, ReLU FFN, each residual.

    LayerNorm (epsilon 1e-5) runs in float32 inside Keras' `layer_normalization` (it upcasts
    half inputs).

    Args:
        d_model: int, model width `d`.
        num_heads: int, heads of both attentions (`hd = d_model // num_heads`).
        ffn_dim: int, hidden width of the ReLU FFN.
        dropout: float, residual dropout on each branch's output. Defaults to `0.1`.
        attention_dropout: float, dropout on the attention probabilities of both attentions.
            Defaults to `0.2`.
        activation_dropout: float, dropout after the FFN's ReLU. Defaults to `0.0`.

    Call arguments:
        x: float tensor `[B, L, d]`.
        cross_kv: `(keys, values)` of the encoder output, each `[B, H, T, hd]`, from this
            layer's `encoder_attn.keys_values(encoder_output)`.
        cross_mask: bool `[B, 1, 1, T]`, True = real encoder frame.
        cache: `None` (teacher forcing: causal self-attention over `x`), or `(k, v)` buffers
            `[B, H, max_len, hd]` with `L == 1`: the token's key/value are written at `index`
            and it attends to positions `<= index`. Defaults to `None`.
        index: int32 scalar, position of the token in the cache (with `cache` only).
        training: bool, whether the dropouts are applied.

    Returns:
        `x [B, L, d]` with `cache=None`; else `(x, cache)` with the updated `(k, v)` buffers.
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float = 0.1,
                 attention_dropout: float = 0.2, activation_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.num_heads, self.ffn_dim = d_model, num_heads, ffn_dim
        self.dropout, self.attention_dropout = dropout, attention_dropout
        self.activation_dropout = activation_dropout
        policy = dict(dtype=self.dtype_policy)

        def norm(name):
            return keras.layers.LayerNormalization(epsilon=1e-5, name=name, **policy)

        self.self_attn = DecoderAttention(d_model, num_heads, attention_dropout,
                                          name="self_attn", **policy)
        self.self_attn_layer_norm = norm("self_attn_layer_norm")
        self.encoder_attn = DecoderAttention(d_model, num_heads, attention_dropout,
                                             name="encoder_attn", **policy)
        self.encoder_attn_layer_norm = norm("encoder_attn_layer_norm")
        self.fc1 = keras.layers.Dense(ffn_dim, activation="relu", kernel_initializer=_hf_init(),
                                      name="fc1", **policy)
        self.fc2 = keras.layers.Dense(d_model, kernel_initializer=_hf_init(), name="fc2", **policy)
        self.final_layer_norm = norm("final_layer_norm")
        self.residual_dropout = keras.layers.Dropout(dropout, **policy)
        self.ffn_dropout = keras.layers.Dropout(activation_dropout, **policy)

    def build(self, input_shape=None):
        shape = (None, self.d_model)
        for layer in (self.self_attn, self.encoder_attn, self.self_attn_layer_norm,
                      self.encoder_attn_layer_norm, self.final_layer_norm, self.fc1):
            layer.build(shape)
        self.fc2.build((None, self.ffn_dim))

    def call(self, x, cross_kv, cross_mask, cache=None, index=None, training=None):
        h = self.self_attn_layer_norm(x)
        keys, values = self.self_attn.keys_values(h)
        if cache is None:
            steps = ops.arange(ops.shape(x)[1])
            self_mask = (steps[:, None] >= steps[None, :])[None, None]
        else:
            start = [0, 0, index, 0]
            keys = ops.slice_update(cache[0], start, keys)
            values = ops.slice_update(cache[1], start, values)
            cache = (keys, values)
            self_mask = (ops.arange(ops.shape(keys)[2]) <= index)[None, None, None]
        h = self.self_attn(h, keys, values, self_mask, training=training)
        x = x + self.residual_dropout(h, training=training)

        h = self.encoder_attn(self.encoder_attn_layer_norm(x), *cross_kv, cross_mask,
                              training=training)
        x = x + self.residual_dropout(h, training=training)

        h = self.ffn_dropout(self.fc1(self.final_layer_norm(x)), training=training)
        x = x + self.residual_dropout(self.fc2(h), training=training)
        return x if cache is None else (x, cache)

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "ffn_dim": self.ffn_dim, "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "activation_dropout": self.activation_dropout}


@keras.saving.register_keras_serializable(package="asl_keras")
class ReferenceDecoder(keras.layers.Layer):
    """HF `Speech2TextDecoder` + untied `lm_head`, the 1st-place character decoder.

    Token embedding `[VOCAB_SIZE, d]` x sqrt(d) (PAD tokens embed to 0, as the reference's
    `padding_idx` row, which also gets no gradient) + sinusoidal positions, dropout, `num_layers`
    pre-LN `DecoderLayer`s, final LayerNorm, `lm_head` Dense(VOCAB_SIZE, no bias, PyTorch
    default init). Teacher forcing uses only the causal mask, no token padding mask; `init_cache`
    and `step` decode one token at a time with a fixed-size KV cache.

    Args:
        d_model: int, model width `d`. The encoder output must have `d_model` features (HF
            projects it with d_model x d_model cross-attention k/v).
        num_layers: int, number of `DecoderLayer`s. Defaults to `2`.
        num_heads: int, attention heads per layer. Defaults to `4`.
        ffn_dim: int, hidden width of each layer's ReLU FFN. Defaults to `512`.
        max_positions: int, the reference's `max_target_positions`; it sizes only the table
            that the importer checks (positions are computed on the fly). Defaults to `1024`.
        dropout: float, dropout on the embeddings and residual dropout in each layer.
            Defaults to `0.1`.
        attention_dropout: float, dropout on the attention probabilities. Defaults to `0.2`.
        activation_dropout: float, dropout after each FFN's ReLU. Defaults to `0.0`.

    Call arguments:
        tokens: int `[B, L]`, decoder input ids (SOS first, see `shift_right`).
        encoder_output: float tensor `[B, T, d_model]`.
        encoder_mask: `[B, T]`, 1 = real frame; `None` = every frame real. Defaults to `None`.
        training: bool, whether the dropouts are applied.

    Returns:
        float32 logits `[B, L, VOCAB_SIZE]`.
    """

    def __init__(self, d_model: int, num_layers: int = 2, num_heads: int = 4,
                 ffn_dim: int = 512, max_positions: int = 1024, dropout: float = 0.1,
                 attention_dropout: float = 0.2, activation_dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.num_layers, self.num_heads = d_model, num_layers, num_heads
        self.ffn_dim, self.max_positions, self.dropout = ffn_dim, max_positions, dropout
        self.attention_dropout, self.activation_dropout = attention_dropout, activation_dropout
        self.decoder_layers = [
            DecoderLayer(d_model, num_heads, ffn_dim, dropout, attention_dropout,
                         activation_dropout, name=f"layers_{i}", dtype=self.dtype_policy)
            for i in range(num_layers)]
        self.layer_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="layer_norm",
                                                          dtype=self.dtype_policy)
        # torch nn.Linear default init: U(+-1/sqrt(fan_in))
        self.lm_head = keras.layers.Dense(
            VOCAB_SIZE, use_bias=False, name="lm_head", dtype=self.dtype_policy,
            kernel_initializer=keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform"))
        self.embed_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, tokens_shape=None, encoder_output_shape=None, encoder_mask_shape=None):
        # autocast=False: gather the float32 table, cast the result (mixed precision)
        self.embed_tokens = self.add_weight(shape=(VOCAB_SIZE, self.d_model), autocast=False,
                                            initializer=_hf_init(), name="embed_tokens")
        for layer in (*self.decoder_layers, self.layer_norm, self.lm_head):
            layer.build((None, self.d_model))

    def _embed(self, tokens, positions, training):
        """`[B, L]` tokens and position ids -> `[B, L, d]` in the compute dtype."""
        emb = ops.take(self.embed_tokens, tokens, axis=0)
        emb = emb * ops.cast(ops.not_equal(tokens, PAD), "float32")[..., None]
        x = emb * math.sqrt(self.d_model) + sinusoidal_positions(positions, self.d_model)
        return self.embed_dropout(ops.cast(x, self.compute_dtype), training=training)

    def _head(self, x):
        return ops.cast(self.lm_head(self.layer_norm(x)), "float32")

    @staticmethod
    def _cross_mask(encoder_output, encoder_mask):
        if encoder_mask is None:
            return ops.ones(ops.shape(encoder_output)[:2], "bool")[:, None, None, :]
        return ops.cast(encoder_mask, "bool")[:, None, None, :]

    def call(self, tokens, encoder_output, encoder_mask=None, training=None):
        tokens = ops.cast(tokens, "int32")
        encoder_output = ops.cast(encoder_output, self.compute_dtype)
        cross_mask = self._cross_mask(encoder_output, encoder_mask)
        x = self._embed(tokens, position_ids(tokens), training)
        for layer in self.decoder_layers:
            cross_kv = layer.encoder_attn.keys_values(encoder_output)
            x = layer(x, cross_kv, cross_mask, training=training)
        return self._head(x)

    def init_cache(self, encoder_output, encoder_mask=None, max_len: int = LABEL_LEN):
        """KV cache for `max_len` decoding steps (a dict of tensors, a `while_loop` state).

        - `self_k`, `self_v`: tuples (one per layer) of zero buffers `[B, H, max_len, hd]` in
          the compute dtype; step `i` writes position `i`.
        - `cross_k`, `cross_v`: tuples of `[B, H, T, hd]`, projected once from the encoder.
        - `cross_mask`: bool `[B, 1, 1, T]`; `count`: int32 `[B]` non-PAD tokens seen so far,
          so a step's position id equals the uncached one even after PAD tokens.
        """
        encoder_output = ops.cast(encoder_output, self.compute_dtype)
        batch = ops.shape(encoder_output)[0]
        empty = ops.zeros((batch, self.num_heads, max_len, self.d_model // self.num_heads),
                          self.compute_dtype)
        cross = [layer.encoder_attn.keys_values(encoder_output) for layer in self.decoder_layers]
        return {"self_k": (empty,) * self.num_layers, "self_v": (empty,) * self.num_layers,
                "cross_k": tuple(k for k, _ in cross), "cross_v": tuple(v for _, v in cross),
                "cross_mask": self._cross_mask(encoder_output, encoder_mask),
                "count": ops.zeros((batch,), "int32")}

    def step(self, token, index, cache, training=None):
        """Decode one token per sample: `token [B]` at position `index` (0 = SOS).

        Returns float32 logits `[B, VOCAB_SIZE]` for the next token and the updated cache.
        """
        token = ops.cast(token, "int32")[:, None]
        real = ops.cast(ops.not_equal(token[:, 0], PAD), "int32")
        count = cache["count"] + real
        x = self._embed(token, (count * real + PAD)[:, None], training)
        new_k, new_v = [], []
        for i, layer in enumerate(self.decoder_layers):
            x, (k, v) = layer(x, (cache["cross_k"][i], cache["cross_v"][i]), cache["cross_mask"],
                              cache=(cache["self_k"][i], cache["self_v"][i]), index=index,
                              training=training)
            new_k.append(k)
            new_v.append(v)
        cache = {**cache, "self_k": tuple(new_k), "self_v": tuple(new_v), "count": count}
        return self._head(x)[:, 0], cache

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "ffn_dim": self.ffn_dim,
                "max_positions": self.max_positions, "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "activation_dropout": self.activation_dropout}


def _members(decoder, encoder_output, encoder_mask):
    if isinstance(decoder, (list, tuple)):
        if encoder_output is not None or encoder_mask is not None:
            raise ValueError("pass encoder outputs inside the (decoder, output, mask) list")
        return list(decoder)
    return [(decoder, encoder_output, encoder_mask)]


def _greedy(members, max_steps: int, cached: bool, finished=None):
    """Shared greedy loop; see `greedy_decode`. `cached=False` re-runs the whole prefix."""
    batch = ops.shape(members[0][1])[0]
    done = ops.zeros((batch,), "bool") if finished is None else ops.cast(finished, "bool")
    ids = ops.concatenate([ops.full((batch, 1), SOS, "int32"),
                           ops.full((batch, max_steps), PAD, "int32")], axis=1)
    logits = ops.zeros((batch, max_steps, VOCAB_SIZE), "float32")
    caches = tuple(dec.init_cache(enc, mask, max_steps) for dec, enc, mask in members
                   ) if cached else ()

    def cond(i, ids, logits, done, caches):
        return ops.logical_and(i < max_steps, ops.logical_not(ops.all(done)))

    def body(i, ids, logits, done, caches):
        token = ops.take(ids, i, axis=1)
        if cached:
            outs = [dec.step(token, i, cache)
                    for (dec, _, _), cache in zip(members, caches, strict=True)]
            caches = tuple(cache for _, cache in outs)
            step_logits = [out for out, _ in outs]
        else:  # positions after i hold PAD; causality keeps them out of position i
            step_logits = [ops.take(dec(ids[:, :max_steps], enc, mask), i, axis=1)
                           for dec, enc, mask in members]
        step = step_logits[0] if len(members) == 1 else ops.mean(ops.stack(step_logits), 0)
        # top_k, not argmax: Keras' float argmax adds a signbit test (BitwiseAnd) that TFLite
        # builtins lack; ties resolve to the lowest index in both, as in torch.argmax
        nxt = ops.cast(ops.top_k(step, 1)[1][:, 0], "int32")
        ids = ops.slice_update(ids, [0, i + 1], nxt[:, None])
        logits = ops.slice_update(logits, [0, i, 0], step[:, None])
        return i + 1, ids, logits, ops.logical_or(done, ops.equal(nxt, EOS)), caches

    state = (ops.convert_to_tensor(0, "int32"), ids, logits, done, caches)
    steps, ids, logits, _, _ = ops.while_loop(cond, body, state, maximum_iterations=max_steps)
    return ids, logits, steps


def greedy_decode(decoder, encoder_output=None, encoder_mask=None, max_steps: int = LABEL_LEN,
                  finished=None):
    """Greedy decoding with the KV cache, as the reference's `generate` (and the TFLite loop).

    `decoder` is a `ReferenceDecoder` (with `encoder_output [B, T, d]`, `encoder_mask [B, T]`)
    or, for an ensemble, a list of `(decoder, encoder_output, encoder_mask)`: every step feeds
    the same token to all members and takes the argmax of their mean logits.
    Starts from SOS; stops when every sample has emitted EOS or after `max_steps` steps
    (samples that finished earlier keep generating, like the reference).
    Returns `(ids, step_logits, steps)`: int32 `ids [B, max_steps + 1]` (SOS first; positions
    after the last step hold PAD), float32 `step_logits [B, max_steps, VOCAB_SIZE]` (the
    logits that chose `ids[:, 1:]`; zero after the last step) and the int32 scalar `steps`, so
    `ids[:, :steps + 1]` is the reference's `generated_ids_raw`.

    `finished` (bool `[B]`, optional) marks samples that need no decoding, as if they had
    emitted EOS already: when all are finished the loop runs no step (`steps` 0, `ids` SOS then
    PAD). The TFLite graph uses it to skip decoding without a conditional around the encoder
    and decoder: ops inside an `IF` branch run several times slower there (docs/tflite.md,
    pitfall 4).
    """
    return _greedy(_members(decoder, encoder_output, encoder_mask), max_steps, cached=True,
                   finished=finished)


def uncached_greedy_decode(decoder, encoder_output=None, encoder_mask=None,
                           max_steps: int = LABEL_LEN):
    """`greedy_decode` without a cache: teacher-forced pass over the whole prefix each step."""
    return _greedy(_members(decoder, encoder_output, encoder_mask), max_steps, cached=False)


def shift_right(labels):
    """Decoder inputs `[B, L]` from labels `[B, L]`: SOS, then labels without the last one."""
    labels = ops.cast(labels, "int32")
    sos = ops.full((ops.shape(labels)[0], 1), SOS, "int32")
    return ops.concatenate([sos, labels[:, :-1]], axis=1)


def sequence_cross_entropy(labels, logits, weights=None):
    """Per-sample cross-entropy `[B]`: weighted mean over positions of `labels [B, L]`.

    As the reference (`ignore_index=-100`, no label smoothing), PAD targets after EOS are
    scored, not ignored; label positions equal to -100 are ignored. With `weights=None` every
    position counts, and the batch mean equals the reference's mean over all B x L positions.
    `weights [B, L]` (e.g. from `backward_targets`) weight positions; the batch mean equals a
    token mean only when every row has the same weight sum.
    """
    labels = ops.cast(labels, "int32")
    keep = ops.cast(ops.not_equal(labels, IGNORE_INDEX), "float32")
    if weights is not None:
        keep = keep * ops.cast(weights, "float32")
    ce = ops.sparse_categorical_crossentropy(ops.maximum(labels, 0), ops.cast(logits, "float32"),
                                             from_logits=True)
    return ops.sum(ce * keep, axis=1) / ops.maximum(ops.sum(keep, axis=1), 1.0)


def backward_targets(labels):
    """Targets of cfg_2's backward decoder, kept at the static length of `labels [B, L]`.

    Per sample: its characters reversed, EOS kept last, then 0 (the space id: the reference's
    `pad_sequence` quirk, scored by its loss). The reference pads only to the batch's longest
    valid length Lb (chars + EOS) and averages CE over B x Lb positions. Here the 0-padding
    runs to L and the returned float32 `weights [B, L]` are 1 on positions `< Lb` and 0 after:
    positions `< Lb` see the same decoder inputs (`shift_right` of these targets) and, by
    causality, give the same logits, so `sequence_cross_entropy(targets, logits, weights)`
    averages to the reference's loss exactly (Lb is per replica under tf.distribute, as it
    was per GPU in the reference). Returns `(targets int32 [B, L], weights)`.
    """
    labels = ops.cast(labels, "int32")
    length = ops.shape(labels)[1]
    valid = ops.sum(ops.cast(ops.not_equal(labels, PAD), "int32"), axis=1)  # chars + EOS
    chars = (valid - 1)[:, None]
    t = ops.arange(length, dtype="int32")[None, :]
    reversed_chars = ops.take_along_axis(labels, ops.maximum(chars - 1 - t, 0), axis=1)
    targets = ops.where(t < chars, reversed_chars, ops.where(t == chars, EOS, 0))
    weights = ops.cast(t < ops.max(valid), "float32") * ops.ones_like(targets, "float32")
    return targets, weights


def flip_time(encoder_output, encoder_mask):
    """Time-reversed `encoder_output [B, T, d]` and `encoder_mask [B, T]` (over the padded T,
    so padding comes first), the backward decoder's inputs."""
    return ops.flip(encoder_output, axis=1), ops.flip(encoder_mask, axis=1)
