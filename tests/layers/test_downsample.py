"""Temporal down/upsampling and the stacked Zipformer encoder: lengths, masks, padding."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from asl_keras.layers.downsample import SimpleDownsample, downsample_mask, upsample
from asl_keras.models.encoder import ZipformerEncoder

SMALL = dict(heads=2, ffn_dims=(12, 16, 20), kernel_size=5)


def lengths_mask(lengths, t):
    return (np.arange(t)[None, :] < np.asarray(lengths)[:, None]).astype("float32")


def test_downsample_then_upsample_preserves_length_and_masks():
    lengths, t, d = [10, 7, 3, 1], 10, 3
    x = np.random.default_rng(0).normal(size=(4, t, 5)).astype("float32")
    mask = lengths_mask(lengths, t)
    layer = SimpleDownsample(d)
    down, down_mask = layer(x, mask)
    assert tuple(down.shape) == (4, 4, 5)
    np.testing.assert_array_equal(down_mask.numpy().sum(1), [-(-n // d) for n in lengths])
    up = upsample(down, d, t)
    assert tuple(up.shape) == (4, t, 5)
    # every real frame maps back to its own group; groups only average real frames
    up = up.numpy()
    for b, n in enumerate(lengths):
        for i in range(n):
            g = i // d
            real = x[b, g * d:min(g * d + d, n)]
            np.testing.assert_allclose(up[b, i], real.mean(0), rtol=1e-5, atol=1e-6)


def test_downsample_weights_are_learned_softmax():
    layer = SimpleDownsample(2)
    x = np.arange(8, dtype="float32").reshape(1, 4, 2)
    layer.build(x.shape)
    layer.logits.assign([np.log(3.0), 0.0])  # weights 0.75 / 0.25
    out, _ = layer(x, np.ones((1, 4), "float32"))
    np.testing.assert_allclose(out.numpy()[0, 0], 0.75 * x[0, 0] + 0.25 * x[0, 1], rtol=1e-6)


def test_downsample_mask_of_odd_lengths():
    np.testing.assert_array_equal(downsample_mask(lengths_mask([5, 4], 5), 4).numpy(),
                                  [[1, 1], [1, 0]])


def _stacked(**kwargs):
    enc = ZipformerEncoder(16, 3, stacks=[(1, 1, 16), (1, 2, 8), (1, 4, 16)], **SMALL, **kwargs)
    enc.build((None, None, 16))
    return enc


def test_stacked_encoder_keeps_shape_zero_pads_and_is_padding_invariant():
    enc = _stacked()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 13, 16)).astype("float32")
    mask = lengths_mask([13, 9], 13)
    x = x * mask[..., None]
    out = enc(x, mask).numpy()
    assert out.shape == (2, 13, 16)
    assert np.abs(out[1, 9:]).max() == 0.0
    # the same sequences with 7 more padded frames give the same real frames
    xp = np.concatenate([x, np.zeros((2, 7, 16), "float32")], axis=1)
    outp = enc(xp, lengths_mask([13, 9], 20)).numpy()
    np.testing.assert_allclose(outp[:, :13] * mask[..., None], out, atol=2e-5)


def test_stack_widths_replace_leading_channels_only():
    enc = ZipformerEncoder(16, 1, stacks=[(1, 2, 8)], **SMALL)
    enc.build((None, None, 16))
    x = np.random.default_rng(2).normal(size=(1, 6, 16)).astype("float32")
    out = enc(x, np.ones((1, 6), "float32")).numpy()
    np.testing.assert_array_equal(out[..., 8:], x[..., 8:])
    assert np.abs(out[..., :8] - x[..., :8]).max() > 1e-4


def test_stacked_encoder_config_round_trip_and_bad_stack():
    enc = _stacked(constraints=True, schedules=False)
    clone = ZipformerEncoder.from_config(enc.get_config())
    clone.build((None, None, 16))
    assert clone.get_config() == enc.get_config()
    assert sum(np.prod(v.shape) for v in clone.weights) == sum(
        np.prod(v.shape) for v in enc.weights)
    assert enc.blocks[0].layer_skip_rate.max == 0.0  # frozen as the fork ran
    with pytest.raises(ValueError, match="width <= 16"):
        ZipformerEncoder(16, 1, stacks=[(1, 2, 32)], **SMALL)


def test_stacked_encoder_trains_under_xla_with_constraints():
    import tensorflow as tf

    enc = _stacked(constraints=True)
    x = tf.constant(np.random.default_rng(3).normal(size=(2, 12, 16)).astype("float32"))
    mask = tf.constant(lengths_mask([12, 8], 12))

    @tf.function(jit_compile=True)
    def grads(step):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(enc(x, mask, training=True, step=step)))
        return tape.gradient(loss, enc.trainable_variables)

    out = grads(tf.constant(10))
    assert all(g is None or bool(tf.reduce_all(tf.math.is_finite(g))) for g in out)
    assert keras.ops.shape(out[0]) == enc.trainable_variables[0].shape
