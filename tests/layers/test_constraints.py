"""Balancer and Whitener: identity forward, gradient terms against autodiff of their penalties."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from asl_keras.layers.constraints import (
    Balancer,
    Whitener,
    balancer_gradient,
    whitener_gradient,
    whitening_metric,
)


def normal(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def gradient_through(layer, x, upstream, **kwargs):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True, **kwargs)
    return y, tape.gradient(y, x, output_gradients=tf.constant(upstream))


def test_balancer_is_identity_forward_and_changes_gradient_only_when_violated():
    # channel 0: always positive (violates max_positive 0.95), channel 1: healthy
    x = normal(4, 50, 2)
    x[..., 0] = np.abs(x[..., 0]) + 3.0
    g = normal(4, 50, 2, seed=1)
    y, grad = gradient_through(Balancer(prob=1.0), x, g)
    np.testing.assert_array_equal(y.numpy(), x)
    changed = np.abs(grad.numpy() - g).max(axis=(0, 1))
    assert changed[0] > 1e-3 and changed[1] == 0.0
    _, untouched = gradient_through(Balancer(prob=0.0), x, g)
    np.testing.assert_array_equal(untouched.numpy(), g)


def test_balancer_gradient_matches_autodiff_of_its_penalty():
    # channels: mean/std too high, RMS too small, healthy, RMS too large, healthy
    x = tf.constant((normal(3, 40, 5) + np.array([4, 0, 0, 0, 0], "float32"))
                    * np.array([1.0, 0.05, 1.0, 300.0, 1.0], "float32"))
    bounds = (-1.3, 1.3, 0.25, 10.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        mean = tf.reduce_mean(x, axis=(0, 1))
        rms = tf.sqrt(tf.reduce_mean(x ** 2, axis=(0, 1)))
        std = tf.sqrt(rms ** 2 - mean ** 2)
        m = mean / std
        penalty = (tf.abs(m - tf.clip_by_value(m, bounds[0], bounds[1]))
                   + tf.abs(tf.math.log(tf.clip_by_value(rms, bounds[2], bounds[3]) / rms)))
        total = tf.reduce_sum(penalty)
    auto = tape.gradient(total, x).numpy()
    ours = balancer_gradient(x, tf.ones_like(x), *bounds, grad_scale=1.0).numpy()
    # ours is normalised to RMS 1 per channel; compare directions channel by channel
    for c in range(5):
        a, o = auto[..., c].ravel(), ours[..., c].ravel()
        if np.abs(a).max() == 0:
            assert np.abs(o).max() == 0
        else:
            np.testing.assert_allclose(o, a / np.sqrt(np.mean(a ** 2)), rtol=1e-3, atol=1e-5)


def test_whitening_metric_is_one_for_white_data_and_grows_with_correlation():
    q, _ = np.linalg.qr(normal(400, 8))  # orthonormal columns: covariance exactly the identity
    white = (q - q.mean(0)) * 10
    q2, _ = np.linalg.qr(white)
    assert float(whitening_metric(q2[None].astype("float32"))) == pytest.approx(1.0, abs=1e-4)
    base = normal(1, 400, 8)
    metrics = []
    for mix in (0.0, 0.5, 0.9):
        shared = normal(1, 400, 1, seed=3)
        metrics.append(float(whitening_metric((1 - mix) * base + mix * shared)))
    assert metrics[0] < 1.2 and metrics[0] < metrics[1] < metrics[2]
    assert metrics[2] > 4.0


def test_whitening_metric_ignores_padded_frames():
    x = normal(2, 30, 6)
    mask = np.ones((2, 30), "float32")
    mask[1, 20:] = 0
    padded = x.copy()
    padded[1, 20:] = 1e3  # junk in padding must not count
    np.testing.assert_allclose(float(whitening_metric(padded, mask)),
                               float(whitening_metric(x, mask)), rtol=1e-5)


def test_whitener_gradient_matches_autodiff_of_its_metric():
    x = tf.constant(normal(2, 50, 6) + normal(2, 50, 1, seed=4))
    with tf.GradientTape() as tape:
        tape.watch(x)
        metric = whitening_metric(x)
    auto = tape.gradient(metric, x).numpy()
    g = tf.constant(normal(2, 50, 6, seed=5))
    ours = whitener_gradient(x, g, limit=1.0, grad_scale=0.01).numpy()
    scale = 0.01 * np.linalg.norm(g.numpy()) / np.linalg.norm(auto)
    np.testing.assert_allclose(ours, auto * scale, rtol=1e-3, atol=1e-7)
    # under the limit: no term at all
    quiet = whitener_gradient(x, g, limit=float(metric) + 1.0, grad_scale=0.01).numpy()
    assert np.abs(quiet).max() == 0.0


def test_whitener_forward_identity_and_inference_builds_nothing():
    x = normal(2, 20, 4) + normal(2, 20, 1, seed=6)
    g = normal(2, 20, 4, seed=7)
    y, grad = gradient_through(Whitener(limit=1.0, prob=1.0), x, g)
    np.testing.assert_array_equal(y.numpy(), x)
    assert np.abs(grad.numpy() - g).max() > 0
    layer = Whitener()
    t = tf.constant(x)
    assert layer(t, training=False) is t
    assert Balancer()(t, training=False) is t


def test_constraints_keep_float16_gradients_finite():
    x = (normal(2, 20, 4) * 50).astype("float16")
    for layer in (Balancer(prob=1.0, dtype="mixed_float16"),
                  Whitener(limit=1.0, prob=1.0, dtype="mixed_float16")):
        _, grad = gradient_through(layer, x, np.ones_like(x))
        assert grad.dtype == tf.float16 and np.isfinite(grad.numpy()).all()


def test_probability_follows_the_step_schedule():
    x = normal(4, 50, 2)
    x[..., 0] = np.abs(x[..., 0]) + 3.0
    g = normal(4, 50, 2, seed=1)
    layer = Balancer(prob=[[0, 1.0], [100, 0.0]])
    fired = []
    for step in (0, 100):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = layer(xt, step=tf.constant(step), training=True)
        fired.append(np.abs(tape.gradient(y, xt, output_gradients=tf.constant(g)) - g).max() > 0)
    assert fired == [True, False]
