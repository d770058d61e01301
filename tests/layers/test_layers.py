"""Every registered layer of `asl_keras.layers` through the shared `run_layer_test`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import keras
import numpy as np
import pytest

import asl_keras.layers
from asl_keras.layers.zipformer import swoosh_l, swoosh_r
from tests.layers.layer_checks import constructor_arguments, run_layer_test

B, T = 2, 6


def normal(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def frame_mask(t=T):
    """Two sequences, the second with two padded frames."""
    return (np.arange(t)[None, :] < np.array([[t], [t - 2]])).astype("float32")


def attention_weights(*shape):
    w = np.exp(normal(*shape, seed=1))
    return w / w.sum(-1, keepdims=True)


def landmarks():
    return normal(B, T, 130, 3)


# name: (init_kwargs, inputs, output shape, trainable, non-trainable, output dtype under
# mixed_float16)
CASES = {
    "RotarySelfAttention": (
        dict(dim=8, heads=2), dict(x=normal(B, T, 8), frame_mask=frame_mask()),
        (B, T, 8), 4, 0, "float16"),
    "RelativeSelfAttention": (
        dict(dim=8, heads=2, dropout=0.2), dict(x=normal(B, T, 8), frame_mask=frame_mask()),
        (B, T, 8), 11, 0, "float16"),
    "Balancer": (
        dict(min_positive=0.1, max_positive=0.9, min_abs=0.3, max_abs=50.0, grad_scale=0.02,
             prob=[[0.0, 0.4], [100.0, 0.1]]),
        dict(x=normal(B, T, 4), step=10, training=True), (B, T, 4), 0, 0, "float16"),
    "Whitener": (
        dict(limit=[[0.0, 5.0], [100.0, 10.0]], grad_scale=0.02, prob=[[0.0, 0.5], [10.0, 0.1]]),
        dict(x=normal(B, T, 4), frame_mask=frame_mask(), step=10, training=True), (B, T, 4),
        0, 0, "float16"),
    "ConvModule": (
        dict(dim=8, kernel_size=3, expansion=4, dropout=0.2, activation=swoosh_r,
             zero_glu_pads=True),
        dict(x=normal(B, T, 8), frame_mask=frame_mask()), (B, T, 8), 7, 2, "float16"),
    "DecoderAttention": (
        dict(d_model=16, num_heads=2, dropout=0.1),
        dict(x=normal(B, 5, 16), keys=normal(B, 2, T, 8, seed=1),
             values=normal(B, 2, T, 8, seed=2),
             attention_mask=frame_mask()[:, None, None, :].astype(bool)),
        (B, 5, 16), 8, 0, "float16"),
    "DecoderLayer": (
        dict(d_model=16, num_heads=2, ffn_dim=24, dropout=0.2, attention_dropout=0.1,
             activation_dropout=0.1),
        dict(x=normal(B, 5, 16), cross_kv=(normal(B, 2, T, 8, seed=1),
                                           normal(B, 2, T, 8, seed=2)),
             cross_mask=frame_mask()[:, None, None, :].astype(bool)),
        (B, 5, 16), 26, 0, "float16"),
    "ReferenceDecoder": (
        dict(d_model=16, num_layers=1, num_heads=2, ffn_dim=24, max_positions=64, dropout=0.2,
             attention_dropout=0.1, activation_dropout=0.1),
        dict(tokens=np.array([[60, 3, 4, 61, 62], [60, 7, 61, 62, 62]], "int32"),
             encoder_output=normal(B, T, 16), encoder_mask=frame_mask()),
        (B, 5, 63), 30, 0, "float32"),
    "SimpleDownsample": (
        dict(factor=3), dict(x=normal(B, 7, 4), frame_mask=frame_mask(7)),
        ((B, 3, 4), (B, 3)), 1, 0, ("float16", "float32")),
    "PartNormalization": (dict(), dict(x=landmarks()), (B, T, 130, 3), 0, 0, "float16"),
    "LandmarkFeatureExtractor": (
        dict(dim=8, filters=4), dict(x=landmarks(), frame_mask=frame_mask()), (B, T, 8), 6, 4,
        "float16"),
    "DominantHandFeatures": (
        dict(dim=8), dict(x=landmarks(), frame_mask=frame_mask()), (B, T, 8), 2, 0, "float16"),
    "RotaryEmbedding": (dict(base=500.0), dict(x=normal(B, T, 2, 4)), (B, T, 2, 4), 0, 0,
                        "float16"),
    "FeedForward": (
        dict(dim=8, expansion=3, dropout=0.2, hidden_dim=12, activation=swoosh_l),
        dict(x=normal(B, T, 8)), (B, T, 8), 4, 0, "float16"),
    "SqueezeformerBlock": (
        dict(dim=8, heads=2, attention="relative", ff_expansion=2, conv_expansion=4,
             kernel_size=3, dropout=0.2, zero_glu_pads=True),
        dict(x=normal(B, T, 8), frame_mask=frame_mask()), (B, T, 8), 42, 2, "float16"),
    "SwooshL": (dict(), dict(x=normal(B, T, 4)), (B, T, 4), 0, 0, "float16"),
    "SwooshR": (dict(), dict(x=normal(B, T, 4)), (B, T, 4), 0, 0, "float16"),
    "BiasNorm": (dict(log_scale_limit=1.0, eps=1e-4), dict(x=normal(B, T, 4)), (B, T, 4), 2, 0,
                 "float16"),
    "Bypass": (
        dict(scale_min=[[0.0, 0.8], [100.0, 0.3]], skip_rate=[[0.0, 0.1], [100.0, 0.0]]),
        dict(x0=normal(B, T, 4), x=normal(B, T, 4, seed=1)), (B, T, 4), 1, 0, "float16"),
    "AttentionWeights": (
        dict(heads=2, head_dim=4), dict(x=normal(B, T, 8), frame_mask=frame_mask()),
        (B, 2, T, T), 2, 0, "float32"),
    "ValueAttention": (
        dict(dim=8, heads=2, head_dim=4),
        dict(x=normal(B, T, 8), attn_weights=attention_weights(B, 2, T, T)), (B, T, 8), 2, 0,
        "float16"),
    "NonlinAttention": (
        dict(dim=8, hidden_dim=6),
        dict(x=normal(B, T, 8), attn_weights=attention_weights(B, T, T)), (B, T, 8), 4, 0,
        "float16"),
    "ZipformerBlock": (
        dict(dim=8, heads=2, ffn_dims=(6, 8, 10), kernel_size=3, head_dim=6, nla_dim=4,
             dropout=0.2, attention_skip_rate=[[0.0, 0.3], [100.0, 0.1]],
             conv_skip_rate=[[0.0, 0.3]], ff_skip_rate=[[0.0, 0.2]],
             layer_skip_rate=[[0.0, 0.4]], bypass_scale_min=[[0.0, 0.7], [100.0, 0.4]],
             constraints=True),
        dict(x=normal(B, T, 8), frame_mask=frame_mask()), (B, T, 8), 58, 4, "float16"),
}


def registered_layers():
    """Every `keras.layers.Layer` class defined in a module of `asl_keras.layers`, by name."""
    found = {}
    for info in pkgutil.iter_modules(asl_keras.layers.__path__):
        module = importlib.import_module(f"asl_keras.layers.{info.name}")
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if obj.__module__ == module.__name__ and issubclass(obj, keras.layers.Layer):
                found[name] = obj
    return found


LAYERS = registered_layers()


def test_every_registered_layer_has_a_case():
    unregistered = sorted(name for name, cls in LAYERS.items()
                          if keras.saving.get_registered_name(cls) != f"asl_keras>{name}")
    assert not unregistered, f"not registered with package='asl_keras': {unregistered}"
    assert sorted(CASES) == sorted(LAYERS), (
        f"layers without a case: {sorted(set(LAYERS) - set(CASES))}; "
        f"cases without a layer: {sorted(set(CASES) - set(LAYERS))}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer(name):
    init_kwargs, inputs, shape, trainable, non_trainable, dtype = CASES[name]
    run_layer_test(LAYERS[name], init_kwargs, inputs, expected_output_shape=shape,
                   expected_trainable_weights=trainable,
                   expected_non_trainable_weights=non_trainable, expected_output_dtype=dtype)


DOCSTRING_SECTIONS = ("Args:", "Call arguments:", "Returns:")


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_docstring(name):
    """keras-hub's convention: a description, then `Args:` with one `name:` entry per
    constructor argument, `Call arguments:` and `Returns:`, in that order."""
    cls = LAYERS[name]
    doc = inspect.cleandoc(cls.__doc__ or "")  # a class's own __doc__: never inherited
    lines = doc.splitlines()
    found = [next((i for i, line in enumerate(lines) if line == section), None)
             for section in DOCSTRING_SECTIONS]
    assert None not in found and found == sorted(found) and found[0] > 0, (
        f"{name}: the docstring needs a description, then the sections "
        f"{DOCSTRING_SECTIONS} in that order, each on a line of its own")
    args = "\n".join(lines[found[0] + 1:found[1]])
    missing = [p.name for p in constructor_arguments(cls)
               if not re.search(rf"^\s+{p.name}:", args, re.MULTILINE)]
    assert not missing, f"{name}: no `Args:` entry for {missing}"
