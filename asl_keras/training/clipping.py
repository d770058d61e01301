"""Gradient clipping that sees the whole gradient under tf.distribute.

Keras 3 (TensorFlow backend) clips in `optimizer.apply` *before* it all-reduces the
gradients: with R replicas each one clips its own partial gradient, so `global_clipnorm` bounds
each part instead of their sum, and a clipped multi-replica run differs from the same global
batch on one device. Here the norm is taken of the summed gradient (one extra all-reduce per
optimizer update, only when there are several replicas) and every replica scales its part
by the same factor, which Keras then sums as usual.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def summed_over_replicas(grads: list) -> list:
    """The gradients summed over all replicas (as is, outside replica context or with one)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return grads
    present = [g for g in grads if g is not None]
    summed = iter(ctx.all_reduce(tf.distribute.ReduceOp.SUM, present))
    return [None if g is None else next(summed) for g in grads]


def global_norm(grads: list) -> tf.Tensor:
    return tf.linalg.global_norm([tf.cast(g, tf.float32) for g in grads if g is not None])


@keras.saving.register_keras_serializable(package="asl_keras")
class AdamW(keras.optimizers.AdamW):
    """Keras AdamW whose `global_clipnorm` applies to the gradient summed over replicas."""

    def _clip_gradients(self, grads):
        if not self.global_clipnorm:
            return super()._clip_gradients(grads)
        norm = global_norm(summed_over_replicas(grads))
        factor = tf.minimum(1.0, self.global_clipnorm / tf.maximum(norm, 1e-12))
        return [None if g is None else g * tf.cast(factor, g.dtype) for g in grads]
