"""Zipformer's constraints: identity forward, an extra gradient term backward.

icefall `scaling.py` and the Zipformer paper's appendix A.3; what is kept of them:
docs/zipformer.md, 'Deviations from icefall's Zipformer2'. `Balancer` and `Whitener` return
their input unchanged; in training, with a scheduled probability per call, they add to the
incoming gradient the gradient of a penalty on the activation statistics, scaled relative to
that incoming gradient. `limit` does the same for a parameter kept in a range (icefall's
`limit_param_value`). Out of training they build no op at all, so an exported model has no trace
of them. Penalty gradients are written out analytically (no nested tape), in float32 whatever
the compute dtype, so they run on every backend, under XLA and in mixed precision.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from asl_keras.layers.scheduled import ScheduledFloat

_TINY = 1e-20
LIMIT_PROB = 0.6  # icefall's limit_param_value default


def _with_extra_gradient(x, fire, extra_gradient):
    """`x` forward; backward `g + fire * extra_gradient(x32, g32)` (fire: float 0/1 scalar)."""

    @ops.custom_gradient
    def _apply(v, on):
        def grad(*args, upstream=None):
            g = args[0] if upstream is None else upstream
            g32 = ops.cast(g, "float32")
            extra = extra_gradient(ops.cast(v, "float32"), g32)
            return ops.cast(g32 + on * extra, g.dtype), ops.zeros_like(on)

        return ops.copy(v), grad

    return _apply(x, fire)


def _fires(prob, seed_generator):
    """1.0 with probability `prob` (float or scalar tensor), else 0.0 (one draw per call)."""
    return ops.cast(keras.random.uniform((), seed=seed_generator) < prob, "float32")


def limit(value, low, high, seed_generator, prob: float = LIMIT_PROB):
    """icefall's `limit_param_value`, for use in training: `value` itself forward.

    With probability `prob` (one draw per call) the backward negates the gradient of entries
    below `low` (above `high`) that would push them further out, so a descent step moves them
    back towards the range; other entries, and the other calls, get the gradient unchanged.
    `low` and `high` may be scalar tensors (a schedule at the current step). The parameter
    itself is never clipped, so training and inference compute with the same value.
    `value`: a variable or tensor of any shape; returns a tensor equal to it.
    """

    def negate_outward(v, g):
        outward = ops.logical_or(ops.logical_and(v < low, g > 0),
                                 ops.logical_and(v > high, g < 0))
        return ops.where(outward, -2.0 * g, ops.zeros_like(g))

    # A tensor copy: tf.custom_gradient rejects functions that read variables themselves.
    return _with_extra_gradient(ops.copy(value), _fires(prob, seed_generator), negate_outward)


def balancer_gradient(x, g, min_mean, max_mean, min_rms, max_rms, grad_scale):
    """Balancer term for `x, g [..., C]`: statistics per channel over all other axes.

    Penalty per channel: `|m - clip(m, min_mean, max_mean)| + |log(clip(r, min_rms, max_rms)/r)|`
    with `m = mean / std` and `r = RMS`. Its gradient is normalised to RMS `grad_scale` per
    channel and multiplied elementwise by `|g|` (icefall's noisy estimate of the gradient's
    magnitude at that element).
    """
    axes = tuple(range(len(x.shape) - 1))
    n = ops.cast(ops.prod(ops.shape(x)[:-1]), "float32")
    mean = ops.mean(x, axis=axes, keepdims=True)
    sq = ops.mean(ops.square(x), axis=axes, keepdims=True)
    std = ops.sqrt(ops.maximum(sq - ops.square(mean), _TINY))
    rms = ops.sqrt(ops.maximum(sq, _TINY))
    m = mean / std
    m_sign = ops.sign(m - ops.clip(m, min_mean, max_mean))
    r_sign = ops.sign(rms - ops.clip(rms, min_rms, max_rms))
    # dm/dx_i = 1/(n std) - mean (x_i - mean) / (n std^3);  d|log(c/r)|/dx_i = sign x_i / (n r^2)
    dm = 1.0 / (n * std) - mean * (x - mean) / (n * std ** 3)
    loss_grad = m_sign * dm + r_sign * x / (n * ops.square(rms))
    grad_rms = ops.sqrt(ops.maximum(ops.mean(ops.square(loss_grad), axis=axes, keepdims=True),
                                    _TINY))
    return ops.abs(g) * loss_grad * (grad_scale / grad_rms)


@keras.saving.register_keras_serializable(package="asl_keras")
class Balancer(keras.layers.Layer):
    """icefall's Balancer (`scaling.py`; Zipformer paper, appendix A.3): keeps each channel's
    share of positive values and mean |x| in range, through the gradient only.

    Identity forward. In training, with probability `prob(step)` per call, the incoming gradient
    gets the gradient of a penalty on the per-channel statistics (`balancer_gradient`) added.
    `min_positive`/`max_positive` become bounds on mean/std through the approximate inverse
    `mean/std ~ 0.814 atanh(2p - 1)`; `min_abs`/`max_abs` become RMS bounds (`RMS ~ 1.2533
    mean|x|` for a Gaussian). Out of training no op is built.

    Args:
        min_positive: float, lowest share of positive values per channel. Defaults to `0.05`.
        max_positive: float, highest share of positive values per channel. Defaults to `0.95`.
        min_abs: float, lowest mean |x| per channel. Defaults to `0.2`.
        max_abs: float, highest mean |x| per channel. Defaults to `100.0`.
        grad_scale: float, RMS per channel of the penalty gradient, relative to the incoming
            gradient's magnitude `|g|`. Defaults to `0.04`.
        prob: schedule (`(step, value)` points, a constant or a `ScheduledFloat`) of the
            optimizer update: the probability that a call adds the term. Defaults to icefall's
            `((0, 0.5), (8000, 0.125))`, 0.5 -> 0.125 over 8k updates.

    Call arguments:
        x: float tensor `[..., C]`, statistics per channel over all other axes.
        step: optimizer update the schedule is read at (`None`: its final value).
        training: bool, whether the gradient term can be added.

    Returns:
        `x` unchanged: `[..., C]`, its dtype.
    """

    def __init__(self, min_positive: float = 0.05, max_positive: float = 0.95,
                 min_abs: float = 0.2, max_abs: float = 100.0, grad_scale: float = 0.04,
                 prob=((0.0, 0.5), (8000.0, 0.125)), **kwargs):
        super().__init__(**kwargs)
        self.min_positive, self.max_positive = min_positive, max_positive
        self.min_abs, self.max_abs, self.grad_scale = min_abs, max_abs, grad_scale
        self.prob = ScheduledFloat.of(prob)
        self.seed_generator = keras.random.SeedGenerator()

    @staticmethod
    def _mean_over_std(p: float) -> float:
        return 0.814 * math.atanh(min(max(2 * p - 1, -0.999), 0.999))

    def call(self, x, step=None, training=False):
        if not training:
            return x
        bounds = (self._mean_over_std(self.min_positive), self._mean_over_std(self.max_positive),
                  1.2533 * self.min_abs, 1.2533 * self.max_abs, self.grad_scale)
        return _with_extra_gradient(x, _fires(self.prob.value(step), self.seed_generator),
                                    lambda v, g: balancer_gradient(v, g, *bounds))

    def get_config(self):
        return {**super().get_config(), "min_positive": self.min_positive,
                "max_positive": self.max_positive, "min_abs": self.min_abs,
                "max_abs": self.max_abs, "grad_scale": self.grad_scale,
                "prob": self.prob.to_list()}


def _centred_rows(x, frame_mask):
    """`x [B, T, C]` -> centred rows `[N, C]` (padded frames as zero rows) and the row weights."""
    c = ops.shape(x)[-1]
    rows = ops.reshape(x, (-1, c))
    w = (ops.ones_like(rows[:, :1]) if frame_mask is None
         else ops.reshape(ops.cast(frame_mask, "float32"), (-1, 1)))
    mean = ops.sum(rows * w, axis=0, keepdims=True) / ops.maximum(ops.sum(w), 1.0)
    return (rows - mean) * w


def whitening_metric(x, frame_mask=None):
    """`mean(eig^2) / mean(eig)^2` of the channel covariance of `x [..., T, C]` (>= 1; 1 = white).

    `(sum_ij C_ij^2 / D) / (sum_i C_ii / D)^2` with `C = X^T X` over the (real) frames of the
    centred `X`. Frames where `frame_mask` is 0 are left out.
    """
    xc = _centred_rows(ops.cast(x, "float32"), frame_mask)
    d = ops.cast(ops.shape(xc)[-1], "float32")
    cov = ops.matmul(ops.transpose(xc), xc)
    return (ops.sum(ops.square(cov)) / d) / (ops.square(ops.trace(cov) / d) + _TINY)


def whitener_gradient(x, g, limit, grad_scale, frame_mask=None):
    """Whitener term: gradient of `relu(metric - limit)` rescaled to `grad_scale * |g|`.

    With `A = sum C_ij^2 / D`, `B = tr C / D`: `dA/dX = 4 X C / D`, `dB/dX = 2 X / D`, and the
    centring needs no correction (both are linear in the centred X, whose rows sum to 0).
    """
    xc = _centred_rows(x, frame_mask)
    d = ops.cast(ops.shape(xc)[-1], "float32")
    cov = ops.matmul(ops.transpose(xc), xc)
    a = ops.sum(ops.square(cov)) / d
    b = ops.trace(cov) / d + _TINY
    dx = 4.0 * ops.matmul(xc, cov) / (d * b ** 2) - 2.0 * a / b ** 3 * 2.0 * xc / d
    active = ops.cast(a / ops.square(b) > limit, "float32")
    dx = ops.reshape(dx, ops.shape(x))
    scale = grad_scale * ops.sqrt(ops.sum(ops.square(g))) / (
        ops.sqrt(ops.sum(ops.square(dx))) + _TINY)
    return active * dx * scale


@keras.saving.register_keras_serializable(package="asl_keras")
class Whitener(keras.layers.Layer):
    """icefall's Whiten (`scaling.py`; Zipformer paper, appendix A.3): pushes the channel
    covariance of `x [B, T, C]` towards white when its metric > limit, through the gradient only.

    Identity forward; in training the incoming gradient gets the gradient of
    `relu(whitening_metric(x) - limit)` added (`whitener_gradient`). icefall fires with a small
    probability under the limit and a larger one over it; here one scheduled `prob` decides
    whether the term is computed and the term is 0 under the limit, which is the same gradient
    in expectation at the over-limit rate. Out of training no op is built.

    Args:
        limit: schedule (`(step, value)` points, a constant or a `ScheduledFloat`) of the
            whitening-metric limit (the metric is >= 1, 1 = white). Defaults to
            `((0, 7.5), (20000, 15.0))`.
        grad_scale: float, norm of the gradient term relative to the incoming gradient's norm.
            Defaults to `0.01`.
        prob: schedule (or constant) of the probability that a call computes the term.
            Defaults to `0.25`.

    Call arguments:
        x: float tensor `[B, T, C]`.
        frame_mask: optional `[B, T]`, 1 = real frame; frames with 0 are left out of the
            metric. Defaults to `None` (every frame counts).
        step: optimizer update the schedules are read at (`None`: their final values).
        training: bool, whether the gradient term can be added.

    Returns:
        `x` unchanged: `[B, T, C]`, its dtype.
    """

    def __init__(self, limit=((0.0, 7.5), (20000.0, 15.0)), grad_scale: float = 0.01,
                 prob: float | list = 0.25, **kwargs):
        super().__init__(**kwargs)
        self.limit = ScheduledFloat.of(limit)
        self.grad_scale = grad_scale
        self.prob = ScheduledFloat.of(prob)
        self.seed_generator = keras.random.SeedGenerator()

    def call(self, x, frame_mask=None, step=None, training=False):
        if not training:
            return x
        threshold = self.limit.value(step)
        return _with_extra_gradient(
            x, _fires(self.prob.value(step), self.seed_generator),
            lambda v, g: whitener_gradient(v, g, threshold, self.grad_scale, frame_mask))

    def get_config(self):
        return {**super().get_config(), "limit": self.limit.to_list(),
                "grad_scale": self.grad_scale, "prob": self.prob.to_list()}
