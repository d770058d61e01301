"""Clipping under MirroredStrategy equals clipping the same global batch on one device."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from asl_keras.training.clipping import AdamW
from asl_keras.training.scaled_adam import ScaledAdam

RNG = np.random.default_rng(0)
X = RNG.normal(size=(8, 5)).astype("float32")
Y = RNG.normal(size=(8, 3)).astype("float32")
INIT = [RNG.normal(size=(5, 3)).astype("float32"), np.zeros(3, "float32")]


def train(strategy, make_optimizer, steps=3):
    with strategy.scope():
        layer = keras.layers.Dense(3)
        layer.build((None, 5))
        layer.set_weights(INIT)
        opt = make_optimizer()
        opt.build(layer.trainable_variables)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            per_sample = tf.reduce_mean(tf.square(layer(x) - y), axis=-1)
            loss = tf.nn.compute_average_loss(per_sample, global_batch_size=8)
        opt.apply(tape.gradient(loss, layer.trainable_variables), layer.trainable_variables)

    dist = iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors((X, Y)).repeat()))

    @tf.function
    def step():
        strategy.run(replica_step, args=next(dist))

    for _ in range(steps):
        step()
    return [v.numpy() for v in layer.trainable_variables]


def mirrored():
    cpus = tf.config.list_logical_devices("CPU")
    assert len(cpus) >= 2, "tests/conftest.py configures 2 logical CPUs"
    return tf.distribute.MirroredStrategy([c.name for c in cpus[:2]])


@pytest.mark.parametrize("make", [lambda: AdamW(0.1, global_clipnorm=0.01),
                                  lambda: ScaledAdam(0.1)], ids=["adamw", "scaled_adam"])
def test_two_replicas_equal_one_device_with_active_clipping(make):
    one = train(tf.distribute.get_strategy(), make)
    two = train(mirrored(), make)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_keras_adamw_alone_would_clip_each_replica_separately():
    # the behaviour asl_keras.training.clipping exists to fix
    make = lambda: keras.optimizers.AdamW(0.1, global_clipnorm=0.01)  # noqa: E731
    one = train(tf.distribute.get_strategy(), make)
    two = train(mirrored(), make)
    assert max(np.abs(a - b).max() for a, b in zip(one, two, strict=True)) > 1e-3
