"""ScheduledFloat: piecewise-linear values, config round trips, and steps inside compiled code."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from asl_keras.layers.scheduled import ScheduledFloat

POINTS = ((0.0, 0.2), (4000.0, 0.05), (16000.0, 0.0))


@pytest.mark.parametrize("points", [POINTS, ((0.0, 0.9), (20000.0, 0.2)), ((100.0, 3.0),),
                                    ((-10.0, 1.0), (0.0, -1.0), (5.0, 2.0))])
def test_values_are_piecewise_linear_and_constant_outside(points):
    steps = np.concatenate([np.random.default_rng(0).uniform(-1000, 60000, 200),
                            [s for s, _ in points]])
    expected = np.interp(steps, [s for s, _ in points], [v for _, v in points])
    got = np.array([float(ScheduledFloat(points).value(s)) for s in steps])
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_known_values_and_inference_value():
    sched = ScheduledFloat(POINTS)
    for step, value in [(-5, 0.2), (0, 0.2), (2000, 0.125), (4000, 0.05), (10000, 0.025),
                        (16000, 0.0), (10**7, 0.0)]:
        assert float(sched.value(step)) == pytest.approx(value, abs=1e-7)
    assert sched.value(None) == sched.final == 0.0
    assert sched.max == 0.2
    assert sched.value(tf.constant(2000, tf.int64)).dtype == tf.float32


def test_of_and_validation():
    assert ScheduledFloat.of(0.3) == ScheduledFloat([(0.0, 0.3)])
    assert ScheduledFloat.of([[0, 1], [10, 0]]) == ScheduledFloat(((0.0, 1.0), (10.0, 0.0)))
    sched = ScheduledFloat(POINTS)
    assert ScheduledFloat.of(sched) is sched
    with pytest.raises(ValueError, match="increasing"):
        ScheduledFloat([(0, 1.0), (0, 2.0)])
    with pytest.raises(ValueError, match="at least one"):
        ScheduledFloat([])


def test_serialisation_round_trips():
    sched = ScheduledFloat(POINTS)
    assert ScheduledFloat.of(sched.to_list()) == sched
    assert ScheduledFloat.from_config(sched.get_config()) == sched
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(sched))
    assert restored == sched


@pytest.mark.parametrize("jit_compile", [False, True])
def test_value_follows_a_step_variable_inside_a_compiled_function(jit_compile):
    sched = ScheduledFloat(((0.0, 0.9), (20000.0, 0.2)))
    step = tf.Variable(0, dtype=tf.int64)  # like optimizer.iterations

    @tf.function(jit_compile=jit_compile)
    def current():
        return sched.value(step)

    seen = []
    for _ in range(3):
        seen.append(float(current()))
        step.assign_add(10000)
    np.testing.assert_allclose(seen, [0.9, 0.55, 0.2], atol=1e-6)
