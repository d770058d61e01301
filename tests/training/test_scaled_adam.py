"""ScaledAdam and Eden against their definitions; selection from the config."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from asl_keras import config
from asl_keras.training.optimizers import make_optimizer
from asl_keras.training.scaled_adam import Eden, ScaledAdam


def test_update_magnitude_scales_with_parameter_rms():
    # RMS 0.2 and 2, both under param_max_rms (3), where the learned scale may still grow
    base = np.random.default_rng(0).normal(size=(8, 4)).astype("float32") * 0.2
    small, large = keras.Variable(base), keras.Variable(base * 10)
    grad = tf.constant(np.random.default_rng(1).normal(size=(8, 4)).astype("float32"))
    opt = ScaledAdam(learning_rate=0.01)
    opt.build([small, large])
    opt.apply([grad, grad], [small, large])
    step_small = np.abs(small.numpy() - base).mean()
    step_large = np.abs(large.numpy() - base * 10).mean()
    assert step_small > 0
    assert step_large / step_small == pytest.approx(10.0, rel=1e-4)


def test_plain_adam_would_not_scale():
    # the contrast that makes the test above meaningful
    base = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    small, large = keras.Variable(base), keras.Variable(base * 10)
    grad = tf.constant(np.ones((8, 4), "float32"))
    opt = keras.optimizers.Adam(0.01)
    opt.apply([grad, grad], [small, large])
    assert np.abs(large.numpy() - base * 10).mean() == pytest.approx(
        np.abs(small.numpy() - base).mean(), rel=1e-4)


def test_learned_scale_shrinks_a_tensor_whose_gradient_points_along_it():
    # loss = 0.5 |theta|^2: the gradient is theta itself, so the log-scale gradient is positive
    theta = keras.Variable(np.full((4, 4), 2.0, "float32"))
    opt = ScaledAdam(learning_rate=0.05)
    for _ in range(20):
        opt.apply([tf.convert_to_tensor(theta)], [theta])
    assert np.sqrt(np.mean(theta.numpy() ** 2)) < 2.0


def test_zero_initialised_parameters_still_move():
    bias = keras.Variable(np.zeros((4,), "float32"))
    opt = ScaledAdam(learning_rate=0.1, beta_1=0.0)
    opt.apply([tf.ones((4,))], [bias])
    np.testing.assert_allclose(bias.numpy(), -0.1 * 0.01, rtol=1e-3)  # lr x param_min_rms


def test_scalars_take_small_plain_steps_and_are_clamped():
    s = keras.Variable(np.array([9.99], "float32"))
    opt = ScaledAdam(learning_rate=1.0, beta_1=0.0)
    opt.apply([tf.constant([-1.0])], [s])  # Adam step ~ +lr * 0.1 = +0.1 -> clamped at 10
    assert s.numpy()[0] == pytest.approx(10.0)


def test_median_clipping_limits_an_outlier_gradient():
    v = keras.Variable(np.ones((4,), "float32"))
    opt = ScaledAdam(learning_rate=0.0)  # lr 0: only the clipping state moves
    opt.build([v])
    for _ in range(10):
        opt.apply([tf.ones((4,))], [v])  # norm of g * rms = 2 each time
    clipped = opt.clip_to_median([tf.fill((4,), 100.0)])[0].numpy()
    assert np.linalg.norm(clipped) == pytest.approx(2.0 * 2.0, rel=1e-5)  # 2 x median
    history = opt.norm_history.numpy()[:11]
    assert history[10] == pytest.approx(200.0)  # the outlier's own norm is recorded


def test_runs_inside_a_compiled_train_step():
    layer = keras.layers.Dense(3)
    layer.build((None, 5))
    opt = ScaledAdam(learning_rate=0.05)
    opt.build(layer.trainable_variables)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(16, 5)).astype("float32"))
    target = x @ tf.constant(rng.normal(size=(5, 3)).astype("float32"))

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(layer(x) - target))
        opt.apply(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables)
        return loss

    losses = [float(step()) for _ in range(80)]
    assert losses[-1] < 0.5 * losses[0]


def test_eden_formula_and_warmup():
    eden = Eden(0.045, lr_steps=7500, lr_epochs=3.5, steps_per_epoch=1000, warmup_steps=500,
                warmup_start=0.5)
    assert float(eden(0)) == pytest.approx(0.045 * 0.5)
    t, e = 5000.0, 5.0
    expected = 0.045 * ((t**2 + 7500**2) / 7500**2) ** -0.25 * ((e**2 + 3.5**2) / 3.5**2) ** -0.25
    assert float(eden(5000)) == pytest.approx(expected, rel=1e-5)
    assert float(eden(250)) < float(eden(500))  # still warming up


def schedule_of(optimizer):
    """The schedule inside an optimizer's `PerUpdate` learning rate, read from its config."""
    return keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"]).schedule


def test_config_selects_optimizer_and_schedule():
    train = config.from_dict(config.Train, {"optimizer": "scaled_adam", "schedule": "eden",
                                            "learning_rate": 0.045}, "train")
    opt = make_optimizer(train, steps_per_epoch=10)
    assert isinstance(opt, ScaledAdam) and isinstance(schedule_of(opt), Eden)
    reference = make_optimizer(config.Train(), steps_per_epoch=10)
    assert isinstance(reference, keras.optimizers.AdamW)
    assert isinstance(schedule_of(reference), keras.optimizers.schedules.CosineDecay)
    with pytest.raises(config.ConfigError, match="train.optimizer"):
        config.from_dict(config.Train, {"optimizer": "sgd"}, "train")
