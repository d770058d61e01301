"""The model is backend-neutral: the full-size configs train on JAX with TensorFlow absent."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.paths import REPO, checkout_env, config_path


@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="jax is not installed (it comes with the test extra)")
def test_full_size_models_build_run_and_differentiate_on_jax_without_tensorflow():
    configs = [config_path("cfg_2.yaml"), config_path("cfg_2_squeezeformer.yaml")]
    env = checkout_env({**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"})
    done = subprocess.run([sys.executable, "-m", "tests.models.backend_check", *configs],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["config"] for r in results] == configs
    for r in results:
        assert r["backend"] == "jax"
        assert r["params"] > 5_000_000  # the real sizes, not a toy
        assert 0 < r["loss"] < 50 and r["grads_finite"]
        # late in the schedule (step 10**6, skip rates ~0) every weight on the training path gets
        # a gradient; a branch detached from the loss would not
        assert r["nonzero_grads"] >= 0.95 * r["grads"], r
