"""RotaryEmbedding: rotate-half RoPE against a NumPy reference, and what positions mean."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from asl_keras.layers.rotary import RotaryEmbedding


def np_rope(x, base=10000.0):
    """Rotate-half rotary embedding of `[B, T, H, D]` in float64."""
    d = x.shape[-1]
    angle = np.arange(x.shape[1])[:, None] * base ** (-np.arange(0, d, 2) / d)
    angle = np.concatenate([angle, angle], axis=-1)[None, :, None, :]
    rotated = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], axis=-1)
    return x * np.cos(angle) + rotated * np.sin(angle)


@pytest.mark.parametrize("base", [10000.0, 500.0])
def test_matches_numpy_rotate_half(base):
    x = np.random.default_rng(0).normal(size=(2, 37, 3, 8)).astype("float32")
    out = np.asarray(RotaryEmbedding(base=base)(x))
    np.testing.assert_allclose(out, np_rope(x.astype("float64"), base), rtol=1e-5, atol=2e-5)


def test_scores_depend_on_the_offset_only():
    """The point of RoPE: <rope(q)_t, rope(k)_s> is a function of t - s."""
    rng = np.random.default_rng(1)
    q, k = rng.normal(size=(1, 1, 1, 16)), rng.normal(size=(1, 1, 1, 16))
    rope = RotaryEmbedding()
    seq_q = np.asarray(rope(np.repeat(q, 50, axis=1).astype("float32")))[0, :, 0]
    seq_k = np.asarray(rope(np.repeat(k, 50, axis=1).astype("float32")))[0, :, 0]
    scores = seq_q @ seq_k.T
    np.testing.assert_allclose(np.diagonal(scores, -3), np.full(47, scores[3, 0]), rtol=1e-4)
    assert not np.allclose(scores[3, 0], scores[4, 0])


def test_float16_keeps_the_angles_of_late_frames():
    x = np.random.default_rng(2).normal(size=(1, 600, 2, 8)).astype("float16")
    out = RotaryEmbedding(dtype="float16")(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    expected = np_rope(x.astype("float64"))
    np.testing.assert_allclose(np.asarray(out, "float64")[:, -50:], expected[:, -50:], atol=2e-2)
