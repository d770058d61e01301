"""Zipformer layers against their formulas (numpy), schedules, skips, padding, saving, fp16."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from asl_keras import config
from asl_keras.layers.constraints import limit
from asl_keras.layers.scheduled import ScheduledFloat
from asl_keras.layers.zipformer import (
    CFG2_FFN_DIMS,
    AttentionWeights,
    BiasNorm,
    Bypass,
    NonlinAttention,
    SwooshL,
    SwooshR,
    ValueAttention,
    ZipformerBlock,
    swoosh_l,
    swoosh_r,
)
from asl_keras.models.encoder import ZipformerEncoder
from tests.layers.test_rotary import np_rope
from tests.paths import config_path

FIRST_PLACE_ENCODER_PARAMS = 6_883_968  # 14 x 491,712, cfg_2 at dim 208
SMALL = dict(dim=16, heads=2, ffn_dims=(12, 16, 20), kernel_size=5)


def rng_normal(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype("float32")


def lengths_mask(lengths, t):
    return (np.arange(t)[None, :] < np.asarray(lengths)[:, None]).astype("float32")


def randomise(layer, seed=0):
    """Random non-trivial weights (BatchNorm variances kept positive)."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        value = rng.normal(size=w.shape) * 0.3
        w.assign(np.abs(value) + 0.5 if "variance" in w.path else value)


def np_softplus(x):
    return np.logaddexp(0.0, x)


# ---------------------------------------------------------------- Swoosh


def test_swoosh_values_match_formulas():
    x = np.concatenate([np.linspace(-30, 30, 301), [-1e4, 1e4]]).astype("float32")
    np.testing.assert_allclose(np.asarray(swoosh_r(x)),
                               np_softplus(x - 1.0) - 0.08 * x - 0.313261687, rtol=1e-6,
                               atol=2e-6)
    np.testing.assert_allclose(np.asarray(swoosh_l(x)),
                               np_softplus(x - 4.0) - 0.08 * x - 0.035, rtol=1e-6, atol=2e-6)
    np.testing.assert_array_equal(np.asarray(SwooshR()(x)), np.asarray(swoosh_r(x)))
    np.testing.assert_array_equal(np.asarray(SwooshL()(x)), np.asarray(swoosh_l(x)))
    assert abs(float(swoosh_r(np.float32(0.0)))) < 1e-6


@pytest.mark.parametrize("fn", [swoosh_l, swoosh_r])
def test_swoosh_slopes_and_float16(fn):
    x = tf.constant([-200.0, -50.0, 50.0, 200.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
    np.testing.assert_allclose(tape.gradient(y, x), [-0.08, -0.08, 0.92, 0.92], atol=1e-6)
    half = fn(tf.constant([-6e4, 0.0, 6e4], tf.float16))
    assert half.dtype == tf.float16 and np.isfinite(half.numpy()).all()
    assert abs(float(swoosh_r(tf.constant(0.0, tf.float16)))) < 1e-6


# ---------------------------------------------------------------- limit, BiasNorm


def test_limit_is_identity_forward_and_turns_outward_gradients_back():
    v = tf.Variable([-2.0, 0.5, 2.0, -2.0, 2.0])
    upstream = tf.constant([1.0, 1.0, -1.0, -1.0, 1.0])
    seed_generator = keras.random.SeedGenerator(0)
    for prob, expected in [(1.0, [-1.0, 1.0, 1.0, -1.0, 1.0]), (0.0, upstream)]:
        with tf.GradientTape() as tape:
            y = limit(v, -1.0, 1.0, seed_generator, prob=prob)
        np.testing.assert_array_equal(y, v)
        # below the range a descent step must raise v (grad < 0), above it lower v (grad > 0)
        np.testing.assert_array_equal(tape.gradient(y, v, output_gradients=upstream), expected)


@pytest.mark.parametrize("log_scale", [0.3, 3.0, -4.0])
def test_bias_norm_formula_uses_the_raw_log_scale(log_scale):
    """Out of [-1.5, 1.5] too, and in training as at inference (the limit is gradient-only)."""
    x = rng_normal(2, 5, 8, scale=2.0)
    bias = rng_normal(8, seed=1)
    norm = BiasNorm()
    norm.build(x.shape)
    norm.bias.assign(bias)
    norm.log_scale.assign(log_scale)
    expected = (x / np.sqrt(np.mean((x - bias) ** 2, axis=-1, keepdims=True) + 1e-5)
                * np.exp(log_scale))
    y = np.asarray(norm(x))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(norm(x, training=True), expected, rtol=1e-5, atol=1e-6)
    # b only enters the RMS: the output is x times one scale per frame
    ratio = y / x
    np.testing.assert_allclose(ratio, np.repeat(ratio[..., :1], 8, axis=-1), rtol=1e-5)
    half = BiasNorm(dtype="mixed_float16")
    half.build(x.shape)
    half.set_weights(norm.get_weights())
    np.testing.assert_allclose(np.asarray(half(x), "float32"), y, rtol=2e-3, atol=2e-3)


def gradient_flips(call, variable, upstream, calls=40):
    """Per training call of `call(training)`, which entries of `variable`'s gradient (under
    the upstream gradient `upstream`) are negated relative to inference: bool `[calls, ...]`.

    The limit penalty may only negate entries, so any other change fails here.
    """

    def grad(training):
        with tf.GradientTape() as tape:
            out = call(training)
        return np.asarray(tape.gradient(out, variable, output_gradients=upstream))

    plain = grad(False)
    flips = []
    for _ in range(calls):
        g = grad(True)
        assert ((g == plain) | (g == -plain)).all()
        flips.append((g == -plain) & (plain != 0))
    return np.array(flips)


@pytest.mark.parametrize("log_scale,direction,outward", [
    (-2.0, 1.0, True), (0.5, 1.0, False), (0.5, -1.0, False), (2.0, 1.0, False),
    (2.0, -1.0, True)])
def test_bias_norm_log_scale_limit_is_a_gradient_penalty(log_scale, direction, outward):
    x = np.abs(rng_normal(2, 5, 8)) + 0.1  # y > 0, so d loss / d log_scale has `direction`'s sign
    keras.utils.set_random_seed(0)
    norm = BiasNorm()
    norm.build(x.shape)
    norm.log_scale.assign(log_scale)
    flips = gradient_flips(lambda training: norm(x, training=training), norm.log_scale,
                           tf.constant(np.full(x.shape, direction, "float32")))
    assert (0.35 < flips.mean() < 0.85) if outward else not flips.any()  # prob 0.6


# ---------------------------------------------------------------- Bypass


def bypass_scale_used(bypass, step, training=True):
    """With x0 = 0 and x = 1 the output is the effective scale c."""
    x0, x = np.zeros((4, 3, 4), "float32"), np.ones((4, 3, 4), "float32")
    return np.asarray(bypass(x0, x, step=step, training=training))[0, 0]


def test_bypass_uses_its_raw_scale_at_every_step_and_at_inference():
    bypass = Bypass()
    bypass.build((1, 1, 4))
    scale = np.array([0.0, 0.5, 0.95, 1.3], "float32")
    bypass.scale.assign(scale)
    for step in (0, 5000, 20000, 50000):
        np.testing.assert_allclose(bypass_scale_used(bypass, step), scale, atol=1e-6)
    np.testing.assert_allclose(bypass_scale_used(bypass, None, training=False), scale)
    np.testing.assert_allclose(bypass_scale_used(bypass, 0, training=False), scale)
    x0, x = rng_normal(2, 4, 4), rng_normal(2, 4, 4, seed=1)
    np.testing.assert_allclose(bypass(x0, x), x0 + scale * (x - x0), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("step,outward", [
    (0, [True, True, False, True]),  # scale_min 0.9: 0.5 is below it
    (5000, [True, True, False, True]),  # 0.725
    (20000, [True, False, False, True]),  # 0.2: 0.5 is inside
    (50000, [True, False, False, True])])
def test_bypass_schedule_moves_only_the_penalty_bounds(step, outward):
    """Scales (-0.2, 0.5, 0.95, 1.3) with gradients pushing each away from [scale_min, 1]
    where it is outside: (+, +, +, -), i.e. descent lowers the first three, raises the last."""
    keras.utils.set_random_seed(0)
    bypass = Bypass()
    bypass.build((1, 1, 4))
    bypass.scale.assign([-0.2, 0.5, 0.95, 1.3])
    x0, x = np.zeros((2, 3, 4), "float32"), np.ones((2, 3, 4), "float32")
    upstream = tf.constant(np.broadcast_to(np.float32([1, 1, 1, -1]), (2, 3, 4)))
    flips = gradient_flips(lambda training: bypass(x0, x, step=step, training=training),
                           bypass.scale, upstream)
    fired = flips.any(axis=1)
    assert 0.35 < fired.mean() < 0.85  # icefall's prob 0.6, one draw per call
    np.testing.assert_array_equal(flips[fired], np.broadcast_to(outward, flips[fired].shape))


def test_bypass_penalty_bound_follows_step_variable_under_xla():
    keras.utils.set_random_seed(0)
    bypass = Bypass()
    bypass.build((1, 1, 1))
    step = tf.Variable(0, dtype=tf.int64)
    x0, x = tf.zeros((1, 1, 1)), tf.ones((1, 1, 1))

    def run():
        with tf.GradientTape() as tape:
            out = bypass(x0, x, step=step, training=True)
        return out, tape.gradient(out, bypass.scale)

    run = tf.function(run, jit_compile=True)
    outputs, negated = [], []
    for _ in range(3):
        calls = [run() for _ in range(20)]
        outputs += [float(out[0, 0, 0]) for out, _ in calls]
        negated.append(any(float(g[0]) < 0 for _, g in calls))
        step.assign_add(10000)
    np.testing.assert_array_equal(outputs, 0.5)  # the initial scale, never clamped
    # scale_min 0.9, 0.55, 0.2: the gradient +1 (lowering c = 0.5) is turned back until 0.2
    assert negated == [True, True, False]


def test_bypass_layer_skip_is_per_sequence():
    x0, x = rng_normal(64, 6, 4), rng_normal(64, 6, 4, seed=1)
    keras.utils.set_random_seed(0)
    for rate, expected in [(1.0, x0), (0.0, x0 + 0.5 * (x - x0))]:
        out = Bypass(skip_rate=rate)(x0, x, step=0, training=True)
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    out = np.asarray(Bypass(skip_rate=0.5)(x0, x, step=0, training=True))
    is_x0 = np.isclose(out, x0).all(axis=-1)  # [B, T]
    assert (is_x0.all(axis=1) | (~is_x0).all(axis=1)).all()  # constant along time
    assert 0 < is_x0.all(axis=1).sum() < 64  # varies along batch
    np.testing.assert_allclose(Bypass(skip_rate=1.0)(x0, x, step=0), x0 + 0.5 * (x - x0),
                               rtol=1e-5, atol=1e-6)  # no skip at inference


# ---------------------------------------------------------------- attention


def np_attention_weights(x, wq, wk, heads, mask):
    b, t, _ = x.shape
    q = np_rope((x @ wq).reshape(b, t, heads, -1))
    k = np_rope((x @ wk).reshape(b, t, heads, -1))
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    scores = np.where(mask[:, None, None, :] > 0, scores, -np.inf)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return scores / scores.sum(axis=-1, keepdims=True)


def test_shared_weights_and_value_attention_match_per_head_numpy():
    heads, head_dim = 3, 4
    x, mask = rng_normal(2, 7, 10), lengths_mask([7, 5], 7)
    weights_layer = AttentionWeights(heads, head_dim)
    attention = ValueAttention(10, heads, head_dim)
    weights = weights_layer(x, mask)
    out = np.asarray(attention(x, weights))
    wq, wk = (np.asarray(d.kernel) for d in (weights_layer.q, weights_layer.k))
    wv, wo = (np.asarray(d.kernel) for d in (attention.v, attention.o))
    expected_weights = np_attention_weights(x, wq, wk, heads, mask)
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-5, atol=1e-6)
    assert weights.dtype == "float32"
    heads_out = [expected_weights[:, h] @ (x @ wv)[..., h * head_dim:(h + 1) * head_dim]
                 for h in range(heads)]
    np.testing.assert_allclose(out, np.concatenate(heads_out, axis=-1) @ wo, rtol=1e-5,
                               atol=1e-5)


def test_padded_queries_stay_finite_and_padded_keys_get_no_weight():
    mask = lengths_mask([4, 0], 6)  # the second sequence is all padding
    weights = np.asarray(AttentionWeights(2, 4)(rng_normal(2, 6, 8), mask))
    assert np.isfinite(weights).all()
    np.testing.assert_array_equal(weights[0, :, :, 4:], 0.0)


def test_nonlin_attention_matches_numpy():
    x, weights = rng_normal(2, 6, 8), rng_normal(2, 6, 6, seed=1)
    nla = NonlinAttention(8, 6)
    nla.build(x.shape)
    randomise(nla)
    w_in, b_in = np.asarray(nla.in_proj.kernel), np.asarray(nla.in_proj.bias)
    w_out, b_out = np.asarray(nla.out_proj.kernel), np.asarray(nla.out_proj.bias)
    gate, value, out_gate = np.split(x @ w_in + b_in, 3, axis=-1)
    expected = (out_gate * (weights @ (np.tanh(gate) * value))) @ w_out + b_out
    np.testing.assert_allclose(nla(x, weights), expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- ZipformerBlock


def small_block(seed=0, **kwargs):
    block = ZipformerBlock(**{**SMALL, **kwargs})
    block.build((None, None, SMALL["dim"]))
    randomise(block, seed)
    return block


def test_block_shape_and_padding_independence():
    block = small_block()
    x = rng_normal(1, 7, 16)
    alone = np.asarray(block(x, np.ones((1, 7), "float32")))
    assert alone.shape == (1, 7, 16)
    padded = np.concatenate([x, rng_normal(1, 5, 16, seed=3, scale=5.0)], axis=1)
    out = np.asarray(block(padded, lengths_mask([7], 12)))
    np.testing.assert_allclose(out[:, :7], alone, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out[:, 7:], 0.0)


def test_block_batching_independence():
    block = small_block()
    x, other = rng_normal(1, 9, 16), rng_normal(2, 9, 16, seed=5)
    alone = np.asarray(block(x, np.ones((1, 9), "float32")))
    batch = np.concatenate([other[:1], x, other[1:]], axis=0)
    out = np.asarray(block(batch, lengths_mask([4, 9, 6], 9)))
    np.testing.assert_allclose(out[1:2], alone, rtol=1e-5, atol=1e-5)


def test_block_layer_skip_returns_input_and_module_skips_leave_ffn1_path():
    x, mask = rng_normal(4, 6, 16), lengths_mask([6, 3, 5, 6], 6)
    x0 = x * mask[..., None]
    block = small_block(layer_skip_rate=1.0)
    np.testing.assert_allclose(block(x, mask, step=0, training=True), x0, atol=1e-6)

    block = small_block(dropout=0.0, attention_skip_rate=1.0, conv_skip_rate=1.0,
                        ff_skip_rate=1.0, layer_skip_rate=0.0)
    step = 7000
    ffn1_in = x0 * np.asarray(block.scales["ffn1"]) + np.asarray(block.biases["ffn1"])
    h = x0 + np.asarray(block.ffn1(ffn1_in))
    h = block.bypass_mid(x0, h, step=step, training=True)
    expected = block.bypass_end(x0, block.norm(h), step=step, training=True) * mask[..., None]
    np.testing.assert_allclose(block(x, mask, step=step, training=True), expected, rtol=1e-5,
                               atol=1e-5)


def test_block_skip_rates_are_zero_at_inference():
    x, mask = rng_normal(3, 6, 16), lengths_mask([6, 4, 2], 6)
    plain = small_block(attention_skip_rate=0.0, conv_skip_rate=0.0, ff_skip_rate=0.0,
                        layer_skip_rate=0.0)
    skippy = small_block(attention_skip_rate=1.0, conv_skip_rate=1.0, ff_skip_rate=1.0,
                         layer_skip_rate=1.0)
    np.testing.assert_allclose(skippy(x, mask), plain(x, mask), rtol=1e-6, atol=1e-6)


def deterministic_in_training(encoder):
    """Skip rates 0 and BatchNorm on its moving statistics, so that with dropout 0 nothing
    random or batch-dependent is left in the training-mode forward."""
    never = ScheduledFloat.of(0.0)
    for block in encoder.blocks:
        block.attention_skip_rate = block.conv_skip_rate = block.ff_skip_rate = never
        block.bypass_end.skip_rate = never
        block.conv1.bn.trainable = block.conv2.bn.trainable = False


@pytest.mark.parametrize("step", [0, 100000])
def test_encoder_trains_the_network_it_evaluates(step):
    """With Bypass scales outside [scale_min(step), 1] and BiasNorm log-scales outside
    [-1.5, 1.5], training mode computes what inference does, early and late in the schedule."""
    encoder = ZipformerEncoder(16, 2, heads=2, ffn_dims=(12, 16, 20), kernel_size=5,
                               dropout=0.0, stacks=[(1, 1, 16), (1, 2, 16)], constraints=True)
    encoder.build((None, None, 16))
    randomise(encoder)
    deterministic_in_training(encoder)
    bypasses = [b for block in encoder.blocks for b in (block.bypass_mid, block.bypass_end)]
    for bypass in bypasses + encoder.combiners:
        bypass.scale.assign(np.linspace(-0.4, 1.5, 16))
    for block in encoder.blocks:
        block.norm.log_scale.assign(2.0)
    x, mask = rng_normal(2, 12, 16), lengths_mask([12, 7], 12)
    np.testing.assert_allclose(encoder(x, mask, training=True, step=step), encoder(x, mask),
                               rtol=1e-5, atol=1e-5)


def test_block_mixed_float16_and_finite_gradients():
    block = ZipformerBlock(**SMALL, dtype="mixed_float16")
    x, mask = rng_normal(3, 10, 16, scale=3.0), lengths_mask([10, 6, 1], 10)
    step = tf.Variable(2000, dtype=tf.int64)
    with tf.GradientTape() as tape:
        out = block(x, mask, step=step, training=True)
        loss = tf.reduce_mean(tf.cast(out, tf.float32) ** 2)
    assert out.dtype == tf.float16 and np.isfinite(out.numpy()).all()
    grads = tape.gradient(loss, block.trainable_weights)
    assert all(g is not None and np.isfinite(np.asarray(g, "float32")).all() for g in grads)
    assert np.isfinite(np.asarray(block(x, mask), "float32")).all()


def test_cfg2_zipformer_encoder_fits_first_place_budget():
    block = ZipformerBlock()  # defaults are the cfg_2 sizes
    block.build((None, None, 208))
    assert block.ffn_dims == CFG2_FFN_DIMS and block.head_dim == 52 and block.nla_dim == 156
    assert block.count_params() == 938_965
    blocks = config.load(config_path("cfg_2.yaml")).model.blocks
    assert blocks == 7 and blocks * block.count_params() <= FIRST_PLACE_ENCODER_PARAMS
