"""Values that follow the training step (Zipformer's ScheduledFloat; docs/zipformer.md).

A `ScheduledFloat` is piecewise linear in the step through points `((step, value), ...)` and
constant before the first and after the last point. It holds no state: the current step is an
argument of `value(step)`, normally `optimizer.iterations` (the optimizer update, the step unit
of every schedule of a run, learning rate included) handed down by the encoder to every layer,
so all schedules read the same counter, advance inside compiled (XLA) functions and on
every device. `step=None` means inference and gives the final value. (The public fork relied on
icefall's Python-side `batch_count`, which its train loop never set, so no schedule moved.)
Layers keep the points in their config; `ScheduledFloat.of` turns a float, a list of points or
a `ScheduledFloat` into one.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="asl_keras")
class ScheduledFloat:
    """Piecewise-linear schedule; `points` are (step, value) pairs with increasing steps."""

    def __init__(self, points: Sequence[Sequence[float]]):
        points = tuple((float(s), float(v)) for s, v in points)
        if not points:
            raise ValueError("a ScheduledFloat needs at least one (step, value) point")
        steps = [s for s, _ in points]
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"schedule steps must be strictly increasing, got {steps}")
        self.points = points

    @classmethod
    def of(cls, spec: ScheduledFloat | float | Sequence[Sequence[float]]) -> ScheduledFloat:
        """A schedule from a constant, a sequence of (step, value) points or a schedule."""
        if isinstance(spec, ScheduledFloat):
            return spec
        if isinstance(spec, int | float):
            return cls([(0.0, spec)])
        return cls(spec)

    @property
    def final(self) -> float:
        return self.points[-1][1]

    @property
    def max(self) -> float:
        return max(v for _, v in self.points)

    def value(self, step=None):
        """Value at `step` (int/float or scalar tensor) as float32; `None` -> final value."""
        if step is None:
            return self.final
        step = ops.cast(step, "float32")
        out = self.points[0][1]
        # Each segment adds its full rise once passed and a linear share while inside it.
        for (s0, v0), (s1, v1) in zip(self.points, self.points[1:], strict=False):
            out = out + (v1 - v0) * ops.clip((step - s0) / (s1 - s0), 0.0, 1.0)
        return ops.convert_to_tensor(out, "float32")

    def to_list(self) -> list[list[float]]:
        """JSON-friendly points for layer configs (accepted back by `of`)."""
        return [[s, v] for s, v in self.points]

    def get_config(self) -> dict:
        return {"points": self.to_list()}

    @classmethod
    def from_config(cls, config: dict) -> ScheduledFloat:
        return cls(**config)

    def __eq__(self, other) -> bool:
        return isinstance(other, ScheduledFloat) and self.points == other.points

    def __hash__(self) -> int:
        return hash(self.points)

    def __repr__(self) -> str:
        return f"ScheduledFloat({list(self.points)})"
