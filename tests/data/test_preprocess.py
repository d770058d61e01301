"""Preprocessing against the 1st-place reference fixtures, plus its robustness guarantees."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from asl_keras.data import preprocess
from asl_keras.landmarks import layout_index
from tests.paths import reference_fixtures

PREPROCESS_FIXTURES = reference_fixtures("preprocess")


def test_all_four_reference_lengths_are_present():
    names = {os.path.basename(p) for p in PREPROCESS_FIXTURES}
    assert {f"preprocess_T{t}_seed0.npz" for t in (7, 100, 384, 500)} <= names


@pytest.mark.parametrize("path", PREPROCESS_FIXTURES, ids=os.path.basename)
def test_matches_reference(path):
    ref = np.load(path)
    settings = json.load(open(path.replace(".npz", ".json")))
    index = layout_index(settings["selected_columns"])
    x, mask = preprocess.preprocess(ref["raw"], settings["max_len"], index)
    np.testing.assert_allclose(x.numpy(), ref["input"], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(mask.numpy(), ref["input_mask"])
    valid = ref["src_index"] >= 0
    t = int(ref["seq_len"])
    idx = preprocess.nearest_indices(t, settings["max_len"]).numpy()
    expected_src = idx if t >= settings["max_len"] else np.arange(settings["max_len"])
    np.testing.assert_array_equal(expected_src[valid], ref["src_index"][valid])


def test_non_finite_inputs_never_reach_the_output():
    rng = np.random.default_rng(0)
    frames = rng.random((20, 390), dtype=np.float32)
    frames[3] = np.nan
    frames[4, :10] = np.inf
    frames[5, 10:20] = -np.inf
    frames[6] = 3e38  # overflows the variance
    x, mask = preprocess.preprocess(frames, 32)
    assert np.isfinite(x.numpy()).all() and mask.numpy().sum() == 20
    all_nan, _ = preprocess.preprocess(np.full((5, 390), np.nan, np.float32), 32)
    assert (all_nan.numpy() == 0).all()


def test_padding_zeroes_and_masks_the_tail():
    frames = np.random.default_rng(1).random((10, 390), dtype=np.float32)
    x, mask = preprocess.preprocess(frames, 16)
    assert x.shape == (16, 130, 3)
    assert (x.numpy()[10:] == 0).all() and mask.numpy().tolist() == [1.0] * 10 + [0.0] * 6


def test_runs_under_xla_with_dynamic_length():
    fn = tf.function(lambda f: preprocess.preprocess(f, 64), jit_compile=True,
                     input_signature=[tf.TensorSpec([None, 390], tf.float32)])
    for t in (3, 64, 100):
        frames = np.random.default_rng(t).random((t, 390), dtype=np.float32)
        x, _ = fn(frames)
        # XLA may reassociate the sums: agree to the reference tolerance, not bit for bit
        np.testing.assert_allclose(x.numpy(), preprocess.preprocess(frames, 64)[0].numpy(),
                                   atol=1e-5)
