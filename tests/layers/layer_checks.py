"""`run_layer_test`: the checks every registered asl_keras layer passes (see test_layers.py).

For a layer built with non-default values of all its constructor arguments:
(a) `get_config` holds every `__init__` argument with its passed value, and `from_config`
rebuilds a layer with the same config; (b) the output shapes, and the output dtypes under a
`mixed_float16` policy (variables stay float32); (c) the number of trainable and non-trainable
weights; (d) a functional model around the layer, saved to `.keras` and loaded back, gives the
same outputs on the same inputs.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile

import keras
import numpy as np


def _serialized(value):
    """`value` as a layer config holds it: sequences as lists, objects in Keras' serialized form."""
    if isinstance(value, list | tuple):
        return [_serialized(v) for v in value]
    return keras.saving.serialize_keras_object(value)


def constructor_arguments(cls):
    """`__init__` parameters of `cls` beyond those of `keras.layers.Layer` (name, dtype, ...)."""
    base = inspect.signature(keras.layers.Layer.__init__).parameters
    params = inspect.signature(cls.__init__).parameters.values()
    return [p for p in params if p.name not in base
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _check_config(cls, init_kwargs):
    params = constructor_arguments(cls)
    names = [p.name for p in params]
    assert sorted(init_kwargs) == sorted(names), (
        f"{cls.__name__}: the case must pass exactly the constructor arguments {names}")
    for p in params:
        assert p.default is p.empty or (
            _serialized(init_kwargs[p.name]) != _serialized(p.default)), (
            f"{cls.__name__}: pass a non-default {p.name}, or a dropped key would go unnoticed")
    config = cls(**init_kwargs).get_config()
    json.dumps(config)  # a .keras file stores the config as JSON
    for name in names:
        assert name in config, f"{cls.__name__}.get_config() drops {name!r}"
        assert config[name] == _serialized(init_kwargs[name]), (
            f"{cls.__name__}.get_config()[{name!r}] is {config[name]!r}, "
            f"passed {init_kwargs[name]!r}")
    assert cls.from_config(config).get_config() == config


def _shapes(outputs):
    return keras.tree.map_structure(lambda t: tuple(t.shape), outputs)


def _dtypes(outputs):
    return keras.tree.map_structure(lambda t: keras.backend.standardize_dtype(t.dtype), outputs)


def _randomise(layer):
    """Positive random weights (BatchNorm variances must stay positive), so a reload that
    loses a weight changes the outputs."""
    rng = np.random.default_rng(0)
    for w in layer.weights:
        w.assign(rng.uniform(0.2, 1.0, size=w.shape))


def _check_mixed_precision(cls, init_kwargs, inputs, expected_output_dtype):
    layer = cls(**init_kwargs, dtype="mixed_float16")
    outputs = layer(**inputs)
    assert _dtypes(outputs) == expected_output_dtype, (
        f"{cls.__name__} under mixed_float16 returns {_dtypes(outputs)}")
    for out in keras.tree.flatten(outputs):
        assert np.isfinite(keras.ops.convert_to_numpy(out).astype("float32")).all()
    stored = {v.path: keras.backend.standardize_dtype(v.dtype) for v in layer.weights}
    assert set(stored.values()) <= {"float32"}, f"{cls.__name__} weights {stored}"


def _check_keras_file(layer, inputs, outputs):
    """Save a functional model around `layer` (array inputs become `keras.Input`s with an
    unknown batch size; other call arguments stay constants) and compare the reload."""
    symbolic = keras.tree.map_structure(
        lambda a: keras.Input(a.shape[1:], dtype=a.dtype) if isinstance(a, np.ndarray) else a,
        inputs)
    model_inputs = [s for s in keras.tree.flatten(symbolic) if isinstance(s, keras.KerasTensor)]
    arrays = [a for a in keras.tree.flatten(inputs) if isinstance(a, np.ndarray)]
    model = keras.Model(model_inputs, layer(**symbolic))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "layer.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
    assert loaded.get_layer(layer.name).get_config() == layer.get_config()
    for before, after in zip(keras.tree.flatten(outputs), keras.tree.flatten(loaded(arrays)),
                             strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(after),
                                   keras.ops.convert_to_numpy(before), rtol=1e-6, atol=1e-6)


def run_layer_test(cls, init_kwargs, inputs, expected_output_shape, expected_trainable_weights,
                   expected_non_trainable_weights, expected_output_dtype="float16"):
    """Run the checks (a)-(d) of this module on layer class `cls`.

    Args:
        cls: the layer class.
        init_kwargs: every constructor argument, each with a value other than its default, in
            the form `get_config` stores it (schedules as lists of points, not scalars).
        inputs: the call arguments by name: NumPy arrays with a batch axis (also inside
            tuples), or constants such as `step` and `training`.
        expected_output_shape: output shape tuple, or a structure of them for several outputs.
        expected_trainable_weights, expected_non_trainable_weights: weight counts once built.
        expected_output_dtype: output dtype (or structure of dtypes) under `mixed_float16`.
    """
    _check_config(cls, init_kwargs)
    _check_mixed_precision(cls, init_kwargs, inputs, expected_output_dtype)
    layer = cls(**init_kwargs)
    layer(**inputs)
    _randomise(layer)
    outputs = layer(**inputs)
    assert _shapes(outputs) == expected_output_shape
    assert len(layer.trainable_weights) == expected_trainable_weights
    assert len(layer.non_trainable_weights) == expected_non_trainable_weights
    _check_keras_file(layer, inputs, outputs)
