"""The reference's optimisation: AdamW, cosine schedule with linear warmup, global-norm clip;
or Zipformer's ScaledAdam and Eden (`scaled_adam.py`), chosen by `train.optimizer/schedule`.

Every schedule counts optimizer updates (one per `train.grad_accumulation` micro-batches), like
icefall's batch counts and `optimizer.iterations`, which the trainer hands to the model's
schedules. Keras calls a learning-rate schedule with its micro-batch counter instead (with
`gradient_accumulation_steps` it counts every `apply` call and averages the gradients of those
calls), so `PerUpdate` divides it back. For the reference's cosine (its `scheduler.step()`
every micro-batch, over a length counted in micro-batches) this is the same curve, held
constant within an update.
"""

from __future__ import annotations

import keras
from keras import ops

from asl_keras import config
from asl_keras.training.clipping import AdamW
from asl_keras.training.scaled_adam import Eden, ScaledAdam


def warmup_cosine(peak: float, warmup: int,
                  total: int) -> keras.optimizers.schedules.CosineDecay:
    """Linear warmup 0 -> peak over `warmup` steps, then half a cosine to 0 at `total`.

    `transformers.get_cosine_schedule_with_warmup(num_cycles=0.5)`. Keras counts the decay
    steps after the warmup, and transformers too decays over at least 1 step.
    """
    return keras.optimizers.schedules.CosineDecay(0.0, max(total - warmup, 1),
                                                  warmup_target=peak, warmup_steps=warmup)


@keras.saving.register_keras_serializable(package="asl_keras")
class PerUpdate(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` of the optimizer update, for Keras to call with its micro-batch counter.

    Returns `schedule(step // micro_batches)`: at every micro-batch the value of the update it
    belongs to, which is `optimizer.iterations`.
    """

    def __init__(self, schedule: keras.optimizers.schedules.LearningRateSchedule,
                 micro_batches: int):
        self.schedule, self.micro_batches = schedule, micro_batches

    def __call__(self, step):
        return self.schedule(ops.floor_divide(step, self.micro_batches))

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "micro_batches": self.micro_batches}

    @classmethod
    def from_config(cls, settings):
        return cls(keras.optimizers.schedules.deserialize(settings["schedule"]),
                   settings["micro_batches"])


def make_schedule(train: config.Train, steps_per_epoch: int):
    """The config's learning-rate schedule as a function of the optimizer update.

    `steps_per_epoch` counts micro-batches; an epoch has `steps_per_epoch / grad_accumulation`
    updates, not always a whole number (accumulation runs on across the end of an epoch).
    """
    updates_per_epoch = steps_per_epoch / train.grad_accumulation
    warmup = int(train.warmup_epochs * updates_per_epoch)
    if train.schedule == "eden":
        return Eden(train.learning_rate, train.eden_steps, train.eden_epochs, updates_per_epoch,
                    warmup_steps=warmup)
    return warmup_cosine(train.learning_rate, warmup, int(train.epochs * updates_per_epoch))


def make_optimizer(train: config.Train, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """The config's optimizer with its schedule and gradient accumulation.

    AdamW: weight decay on every parameter, norms and biases included, as in the reference,
    and global-norm clipping at `clip_norm` of the gradient summed over replicas.
    """
    schedule = PerUpdate(make_schedule(train, steps_per_epoch), train.grad_accumulation)
    accumulate = train.grad_accumulation if train.grad_accumulation > 1 else None
    if train.optimizer == "scaled_adam":
        return ScaledAdam(learning_rate=schedule, gradient_accumulation_steps=accumulate)
    return AdamW(learning_rate=schedule, weight_decay=train.weight_decay,
                 global_clipnorm=train.clip_norm, gradient_accumulation_steps=accumulate)
