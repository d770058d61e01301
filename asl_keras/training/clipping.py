"""Optimizers that see the whole gradient under tf.distribute.

Keras 3 (TensorFlow backend) is given each replica's part of the gradient and all-reduces it
inside its update. So its `global_clipnorm` clips each part before the sum (a clipped
multi-replica run differs from the same global batch on one device), and with
`gradient_accumulation_steps` the all-reduce and the variable updates, which are merge calls
under MirroredStrategy, sit inside its accumulate-or-update conditional, which MirroredStrategy
cannot build ("merge_call called while defining a new graph").

`SummedGradients` sums the gradient over the replicas first: one all-reduce per micro-batch, in
replica context, before anything conditional. Clipping, accumulation and the update then see
the global gradient, the same on every replica, and each replica applies it to its own copy of
the variables, as tf.distribute's mirrored updates do, but without merge calls, so that Keras'
conditional holds no synchronisation point. With accumulation this costs an all-reduce per
micro-batch instead of one per update; in exchange the accumulators are equal on all replicas,
so the checkpoint (which saves one copy) holds the whole accumulated gradient.

`LossScaleOptimizer` (fp16) skips a step with a non-finite gradient on any replica on all of
them together.
"""

from __future__ import annotations

import keras

from asl_keras.runtime import tf


def several_replicas() -> tf.distribute.ReplicaContext | None:
    """The replica context when there are several replicas in sync, else None."""
    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def summed_over_replicas(grads: list) -> list:
    """The gradients summed over all replicas (as is, outside replica context or with one)."""
    ctx = several_replicas()
    if ctx is None:
        return grads
    present = [g for g in grads if g is not None]
    summed = iter(ctx.all_reduce(tf.distribute.ReduceOp.SUM, present))
    return [None if g is None else next(summed) for g in grads]


class SummedGradients:
    """Optimizer mixin (before the Keras optimizer class): apply the gradient summed over
    replicas, with local updates that may sit in the accumulation conditional."""

    def _backend_apply_gradients(self, grads, trainable_variables):
        super()._backend_apply_gradients(summed_over_replicas(grads), trainable_variables)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        for grad, variable in zip(grads, trainable_variables, strict=True):
            self.update_step(grad, variable, learning_rate)

    def _backend_increment_gradient_accumulators(self, grads, acc_grads):
        for grad, accumulator in zip(grads, acc_grads, strict=True):
            self.assign_add(accumulator, grad)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return
        for variable in variables:
            if self._use_weight_decay(variable):
                lr = tf.cast(self.learning_rate, variable.dtype)
                wd = tf.cast(self.weight_decay, variable.dtype)
                self.assign_sub(variable, variable * wd * lr)


@keras.saving.register_keras_serializable(package="asl_keras")
class AdamW(SummedGradients, keras.optimizers.AdamW):
    """Keras AdamW whose `global_clipnorm` applies to the gradient summed over replicas."""


@keras.saving.register_keras_serializable(package="asl_keras")
class LossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras' dynamic loss scaling, deciding for all replicas together.

    Keras takes replica 0's verdict on its own part of the gradient for every replica (it
    expects all-reduced gradients): a part that overflows on another replica would pass,
    reach the all-reduce and make every replica's weights NaN, with the scale kept. Here the
    verdicts are all-reduced, so every replica skips the step and halves the scale.
    """

    def check_finite(self, grads):
        finite = super().check_finite(grads)
        ctx = several_replicas()
        if ctx is None:
            return finite
        failed = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                tf.cast(tf.logical_not(finite), tf.float32))
        return tf.equal(failed, 0.0)
