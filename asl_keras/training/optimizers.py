"""The reference's optimisation: AdamW, cosine schedule with linear warmup, global-norm clip;
or Zipformer's ScaledAdam and Eden (`scaled_adam.py`), chosen by `train.optimizer/schedule`.

The schedule advances per micro-batch, like the reference (`scheduler.step()` every batch while
the optimizer steps every `grad_accumulation` batches): Keras counts `iterations` per `apply`
call and, with `gradient_accumulation_steps`, averages the gradients of those calls.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from asl_keras import config
from asl_keras.training.clipping import AdamW
from asl_keras.training.scaled_adam import Eden, ScaledAdam


@keras.saving.register_keras_serializable(package="asl_keras")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup 0 -> peak over `warmup` steps, then half a cosine to 0 at `total`.

    `transformers.get_cosine_schedule_with_warmup(num_cycles=0.5)`.
    """

    def __init__(self, peak: float, warmup: int, total: int):
        self.peak, self.warmup, self.total = peak, warmup, total

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = step / max(self.warmup, 1)
        progress = (step - self.warmup) / max(self.total - self.warmup, 1)
        cosine = 0.5 * (1.0 + ops.cos(math.pi * ops.clip(progress, 0.0, 1.0)))
        return self.peak * ops.where(step < self.warmup, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total}


def make_schedule(train: config.Train, steps_per_epoch: int):
    """The config's learning-rate schedule, in optimizer `iterations` (micro-batches)."""
    warmup = int(train.warmup_epochs * steps_per_epoch)
    if train.schedule == "eden":
        return Eden(train.learning_rate, train.eden_steps, train.eden_epochs, steps_per_epoch,
                    warmup_steps=warmup)
    return WarmupCosine(train.learning_rate, warmup, train.epochs * steps_per_epoch)


def make_optimizer(train: config.Train, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The config's optimizer with its schedule and gradient accumulation.

    AdamW: weight decay on every parameter, norms and biases included, as in the reference,
    and global-norm clipping at `clip_norm` of the gradient summed over replicas.
    """
    schedule = make_schedule(train, steps_per_epoch)
    accumulate = train.grad_accumulation if train.grad_accumulation > 1 else None
    if train.optimizer == "scaled_adam":
        return ScaledAdam(learning_rate=schedule, gradient_accumulation_steps=accumulate)
    return AdamW(learning_rate=schedule, weight_decay=train.weight_decay,
                                  global_clipnorm=train.clip_norm,
                                  gradient_accumulation_steps=accumulate)
