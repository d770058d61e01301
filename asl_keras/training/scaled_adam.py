"""Zipformer's ScaledAdam optimizer and Eden learning-rate schedule (docs/zipformer.md).

ScaledAdam (icefall `optim.py`), per parameter tensor with RMS `r`:
- Adam's normalised step `g / (sqrt(v_hat) + eps)` (second moment only, beta2 0.98), multiplied
  by `max(r, param_min_rms)`: every tensor changes by about the same *relative* amount per
  step, whatever its scale;
- the scale itself is learned: `h = sum(g * theta)` is the gradient w.r.t. the log-scale; its
  Adam-normalised step `-lr * scalar_lr_scale * h / sqrt(w_hat)`, clamped to +-0.1 and to keep
  `r <= param_max_rms`, is applied as `theta += step * theta`;
- momentum beta1 0.9 on the combined delta (no beta1 bias correction, as icefall);
- scalars (single-element tensors) take plain Adam steps at `lr * scalar_lr_scale`, clamped to
  +-scalar_max;
- clipping: the global norm of `g * r` is clipped to `clipping_scale` x the median of the last
  100 norms.
Deviation: `param_min_rms` defaults to 0.01, not icefall's 1e-5. Keras starts biases,
BatchNorm betas and the block's module shifts at exactly 0 (icefall's layers start them small
and random); with a 1e-5 floor they would take steps of lr * 1e-5 and stay frozen.
Simplifications, said plainly: `r` and the scale step are updated every step (icefall: every 4
steps, for speed, and groups same-shaped tensors). The clipping norm is that of the gradient
summed over replicas (`clipping.SummedGradients` sums before clipping), so it does not depend
on the replica count.
"""

from __future__ import annotations

import keras
from keras import ops

from asl_keras.training.clipping import SummedGradients

_HISTORY = 100  # gradient norms kept for the median


@keras.saving.register_keras_serializable(package="asl_keras")
class ScaledAdam(SummedGradients, keras.optimizers.Optimizer):
    def __init__(self, learning_rate=0.045, beta_1: float = 0.9, beta_2: float = 0.98,
                 epsilon: float = 1e-8, scalar_lr_scale: float = 0.1,
                 param_min_rms: float = 1e-2, param_max_rms: float = 3.0,
                 scalar_max: float = 10.0, clipping_scale: float = 2.0,
                 name: str = "scaled_adam", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.scalar_lr_scale, self.scalar_max = scalar_lr_scale, scalar_max
        self.param_min_rms, self.param_max_rms = param_min_rms, param_max_rms
        self.clipping_scale = clipping_scale

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._second_moments = self.add_optimizer_variables(var_list, "second_moment")
        self._momenta = self.add_optimizer_variables(var_list, "momentum")
        # Each replica updates its own copy (`SummedGradients`), as Keras' moments.
        self._scale_moments = [self.add_variable((), "zeros", name=f"scale_moment_{i}")
                               for i in range(len(var_list))]
        self.norm_history = self.add_variable((_HISTORY,), "zeros", name="norm_history")
        self._norm_count = self.add_variable((), "zeros", dtype="int32", name="norm_count")

    @staticmethod
    def _is_scalar(variable) -> bool:
        size = 1
        for d in variable.shape:
            size *= d
        return size == 1

    def _param_rms(self, variable):
        v = ops.cast(variable, "float32")
        return ops.clip(ops.sqrt(ops.mean(ops.square(v))), self.param_min_rms, 1e30)

    def _clip_gradients(self, grads):
        # Keras' clipping hook: its own clipnorm/clipvalue (if set) first, then the median rule.
        return self.clip_to_median(super()._clip_gradients(grads))

    def clip_to_median(self, grads):
        """Clip the global norm of `g * param_rms` to clipping_scale x the median of the last
        100 such norms, and record this one in `norm_history`."""
        terms = []
        for g, v in zip(grads, self._trainable_variables, strict=True):
            if g is None:
                continue
            rms = 1.0 if self._is_scalar(v) else self._param_rms(v)
            terms.append(ops.sum(ops.square(ops.cast(g, "float32") * rms)))
        norm = ops.sqrt(ops.sum(ops.stack(terms)))
        count = ops.minimum(self._norm_count, _HISTORY)
        filled = ops.arange(_HISTORY) < count
        ranked = ops.sort(ops.where(filled, self.norm_history, 1e30))
        median = ranked[ops.maximum(count - 1, 0) // 2]
        limit = self.clipping_scale * median
        factor = ops.where(ops.logical_and(count > 0, norm > limit),
                           limit / ops.maximum(norm, 1e-20), 1.0)
        slot = ops.mod(self._norm_count, _HISTORY)
        self.norm_history.assign(ops.where(ops.arange(_HISTORY) == slot, norm,
                                            self.norm_history))
        self._norm_count.assign_add(1)
        return [None if g is None else g * ops.cast(factor, g.dtype) for g in grads]

    def update_step(self, gradient, variable, learning_rate):
        i = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, "float32")
        g = ops.cast(gradient, "float32")
        theta = ops.cast(variable, "float32")
        step = ops.cast(self.iterations + 1, "float32")
        v = self._second_moments[i]
        self.assign(v, self.beta_2 * v + (1 - self.beta_2) * ops.square(g))
        correction = 1.0 - ops.power(self.beta_2, step)
        adam = g / (ops.sqrt(v / correction) + self.epsilon)
        if self._is_scalar(variable):
            delta = -lr * self.scalar_lr_scale * adam
        else:
            rms = ops.sqrt(ops.mean(ops.square(theta)))
            h = ops.sum(g * theta)
            w = self._scale_moments[i]
            self.assign(w, self.beta_2 * w + (1 - self.beta_2) * ops.square(h))
            scale_step = ops.clip(
                -lr * self.scalar_lr_scale * h / (ops.sqrt(w / correction) + self.epsilon),
                -0.1, 0.1)
            # never grow a tensor whose RMS is already at the maximum
            scale_step = ops.where(ops.logical_and(rms >= self.param_max_rms, scale_step > 0),
                                   0.0, scale_step)
            delta = -lr * ops.maximum(rms, self.param_min_rms) * adam + scale_step * theta
        m = self._momenta[i]
        self.assign(m, self.beta_1 * m + (1 - self.beta_1) * delta)
        new = theta + m
        if self._is_scalar(variable):
            new = ops.clip(new, -self.scalar_max, self.scalar_max)
        self.assign(variable, ops.cast(new, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "scalar_lr_scale": self.scalar_lr_scale,
                "param_min_rms": self.param_min_rms, "param_max_rms": self.param_max_rms,
                "scalar_max": self.scalar_max, "clipping_scale": self.clipping_scale}


@keras.saving.register_keras_serializable(package="asl_keras")
class Eden(keras.optimizers.schedules.LearningRateSchedule):
    """`base * ((t^2+S^2)/S^2)^-1/4 * ((e^2+E^2)/E^2)^-1/4 * warm(t)`, e = completed epochs.

    `warm` rises linearly from `warmup_start` to 1 over `warmup_steps`. icefall LibriSpeech:
    base 0.045, S (lr_batches) 7500, E (lr_epochs) 3.5, warmup 500 from 0.5 (paper) / 0.1 (code).
    """

    def __init__(self, base: float, lr_steps: float, lr_epochs: float, steps_per_epoch: int,
                 warmup_steps: int = 500, warmup_start: float = 0.5):
        self.base, self.lr_steps, self.lr_epochs = base, lr_steps, lr_epochs
        self.steps_per_epoch, self.warmup_steps = steps_per_epoch, warmup_steps
        self.warmup_start = warmup_start

    def __call__(self, step):
        t = ops.cast(step, "float32")
        epoch = ops.floor(t / max(self.steps_per_epoch, 1))
        step_factor = ops.power((t ** 2 + self.lr_steps ** 2) / self.lr_steps ** 2, -0.25)
        epoch_factor = ops.power((epoch ** 2 + self.lr_epochs ** 2) / self.lr_epochs ** 2, -0.25)
        warm = self.warmup_start + (1.0 - self.warmup_start) * ops.clip(
            t / max(self.warmup_steps, 1), 0.0, 1.0)
        return self.base * step_factor * epoch_factor * warm

    def get_config(self):
        return {"base": self.base, "lr_steps": self.lr_steps, "lr_epochs": self.lr_epochs,
                "steps_per_epoch": self.steps_per_epoch, "warmup_steps": self.warmup_steps,
                "warmup_start": self.warmup_start}
