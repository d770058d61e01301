"""The optimizers under MirroredStrategy (2 logical CPUs) equal the same global batches on one
device: global-norm clipping, gradient accumulation, and fp16 loss scaling, whose skip of a
non-finite step must be taken by every replica together."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from asl_keras.training.clipping import AdamW, LossScaleOptimizer, SummedGradients
from asl_keras.training.scaled_adam import ScaledAdam

RNG = np.random.default_rng(0)
X = RNG.normal(size=(8, 8, 5)).astype("float32")  # 8 global micro-batches of 8 samples
Y = RNG.normal(size=(8, 8, 3)).astype("float32")
INIT = [RNG.normal(size=(5, 3)).astype("float32"), np.zeros(3, "float32")]


class Run:
    """A Dense layer trained by `make_optimizer` on the global micro-batches `x`, `y` (one
    `apply` each), every micro-batch split evenly over the strategy's replicas."""

    def __init__(self, strategy, make_optimizer, x=X[:3], y=Y[:3]):
        self.strategy = strategy
        with strategy.scope():
            self.layer = keras.layers.Dense(3)
            self.layer.build((None, 5))
            self.layer.set_weights(INIT)
            self.optimizer = make_optimizer()
            self.optimizer.build(self.layer.trainable_variables)
        variables, global_batch = self.layer.trainable_variables, x.shape[1]

        def replica_step(x, y):
            with tf.GradientTape() as tape:
                error = tf.cast(self.layer(x), "float32") - y
                per_sample = tf.reduce_mean(tf.square(error), axis=-1)
                loss = tf.nn.compute_average_loss(per_sample, global_batch_size=global_batch)
                scaled = self.optimizer.scale_loss(loss)
            self.optimizer.apply(tape.gradient(scaled, variables), variables)
            return loss

        batches = iter(strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices((x, y))))

        @tf.function
        def step():
            losses = strategy.run(replica_step, args=next(batches))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

        self.losses = [float(step()) for _ in range(len(x))]

    @property
    def weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.layer.trainable_variables]

    @property
    def variables(self) -> list:
        return self.layer.trainable_variables + self.optimizer.variables


def copies(strategy, variable) -> list[np.ndarray]:
    """Every replica's copy of the Keras `variable`."""
    return [np.asarray(c) for c in strategy.experimental_local_results(variable.value)]


def assert_in_sync(strategy, variables):
    """Every replica holds the same value of each variable, to the bit."""
    for v in variables:
        first, *others = copies(strategy, v)
        for other in others:
            np.testing.assert_array_equal(first, other, err_msg=v.path)


def mirrored():
    cpus = tf.config.list_logical_devices("CPU")
    assert len(cpus) >= 2, "tests/conftest.py configures 2 logical CPUs"
    return tf.distribute.MirroredStrategy([c.name for c in cpus[:2]])


def assert_same(one: list[np.ndarray], two: list[np.ndarray], rtol=1e-5, atol=1e-6):
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("make", [lambda: AdamW(0.1, global_clipnorm=0.01),
                                  lambda: ScaledAdam(0.1)], ids=["adamw", "scaled_adam"])
def test_two_replicas_equal_one_device_with_active_clipping(make):
    one = Run(tf.distribute.get_strategy(), make)
    two = Run(mirrored(), make)
    assert_same(one.weights, two.weights)
    assert_same(one.losses, two.losses)


def test_keras_adamw_alone_would_clip_each_replica_separately():
    # the behaviour asl_keras.training.clipping exists to fix
    make = lambda: keras.optimizers.AdamW(0.1, global_clipnorm=0.01)  # noqa: E731
    one = Run(tf.distribute.get_strategy(), make)
    two = Run(mirrored(), make)
    assert max(np.abs(a - b).max() for a, b in zip(one.weights, two.weights, strict=True)) > 1e-3


class SGD(SummedGradients, keras.optimizers.SGD):
    """Unlike Adam's, SGD's step is proportional to the gradient: a gradient summed twice, or
    not summed over replicas, changes its result."""


ACCUMULATING = {
    "adamw": lambda steps: AdamW(0.1, weight_decay=0.05, global_clipnorm=0.05,
                                 gradient_accumulation_steps=steps),
    "scaled_adam": lambda steps: ScaledAdam(0.1, gradient_accumulation_steps=steps),
    "sgd": lambda steps: SGD(0.1, momentum=0.5, gradient_accumulation_steps=steps),
}


@pytest.mark.parametrize("name", ACCUMULATING)
@pytest.mark.parametrize("steps", [2, 4])
def test_gradient_accumulation_on_two_replicas_equals_one_device(name, steps):
    """Two updates of `steps` distinct micro-batches each (cfg_2 accumulates 8 on several GPUs):
    the same losses, weights and optimizer state, every replica's copy identical."""
    make = lambda: ACCUMULATING[name](steps)  # noqa: E731
    x, y = X[:2 * steps], Y[:2 * steps]
    one = Run(tf.distribute.get_strategy(), make, x, y)
    two = Run(mirrored(), make, x, y)
    assert int(two.optimizer.iterations.numpy()) == 2
    assert_same(one.losses, two.losses)
    assert_same(one.weights, two.weights)
    assert_same([v.numpy() for v in one.optimizer.variables],
                [v.numpy() for v in two.optimizer.variables])
    assert_in_sync(two.strategy, two.variables)
    assert max(np.abs(w - i).max() for w, i in zip(two.weights, INIT, strict=True)) > 1e-2


def test_accumulated_micro_batches_equal_one_step_on_their_union():
    """What accumulation means: 2 x 4 micro-batches of 8 give the 2 steps of batch 32 (with
    clipping and weight decay at each update), on two replicas too."""
    whole = lambda: AdamW(0.1, weight_decay=0.05, global_clipnorm=0.05)  # noqa: E731
    union = Run(tf.distribute.get_strategy(), whole, X.reshape(2, 32, 5), Y.reshape(2, 32, 3))
    accumulated = Run(mirrored(), lambda: ACCUMULATING["adamw"](4), X, Y)
    assert_same(union.weights, accumulated.weights)


SCALE = 2.0 ** 10  # Keras' default 2^15 overflows float16 on these clean batches already


def loss_scaled(steps=None):
    return LossScaleOptimizer(AdamW(0.1, global_clipnorm=0.05, gradient_accumulation_steps=steps),
                              initial_scale=SCALE)


@pytest.mark.parametrize("steps", [None, 2], ids=["no_accumulation", "accumulation_2"])
def test_fp16_loss_scaling_on_two_replicas_equals_one_device(mixed_float16, steps):
    """`mixed_float16` is what `auto` picks on several GPUs: float16 compute, float32 weights,
    dynamic loss scaling."""
    one = Run(tf.distribute.get_strategy(), lambda: loss_scaled(steps), X[:4], Y[:4])
    two = Run(mirrored(), lambda: loss_scaled(steps), X[:4], Y[:4])
    assert two.layer.compute_dtype == "float16"
    assert int(two.optimizer.iterations.numpy()) == 4 // (steps or 1)
    assert float(two.optimizer.dynamic_scale.numpy()) == SCALE  # no step was skipped
    assert_same(one.losses, two.losses, rtol=1e-3, atol=1e-4)
    assert_same(one.weights, two.weights, rtol=1e-3, atol=1e-4)
    assert_in_sync(two.strategy, two.variables)


@pytest.mark.parametrize("steps", [None, 2], ids=["no_accumulation", "accumulation_2"])
def test_an_overflow_on_one_replica_makes_every_replica_skip_and_lower_the_scale(
        mixed_float16, steps):
    """The second of 4 micro-batches overflows float16 on replica 1 only (its half of the
    global batch): every replica skips that micro-batch and halves the loss scale, as one
    device does with the same global batch; the other 3 micro-batches train normally."""
    x = X[:4].copy()
    x[1, 4:] *= 1e5  # > 65504, the largest float16
    one = Run(tf.distribute.get_strategy(), lambda: loss_scaled(steps), x, Y[:4])
    two = Run(mirrored(), lambda: loss_scaled(steps), x, Y[:4])
    for run in (one, two):
        scales = copies(run.strategy, run.optimizer.dynamic_scale)
        assert [float(s) for s in scales] == [SCALE / 2] * run.strategy.num_replicas_in_sync
        assert int(run.optimizer.iterations.numpy()) == 3 // (steps or 1)  # skipped: uncounted
        assert all(np.isfinite(w).all() for w in run.weights)
    assert not np.isfinite(two.losses[1])
    assert_same(one.weights, two.weights, rtol=1e-3, atol=1e-4)
    assert_in_sync(two.strategy, two.variables)
    assert max(np.abs(w - i).max() for w, i in zip(two.weights, INIT, strict=True)) > 1e-2
