"""The model is backend-neutral: every flag of cfg_2 and cfg_2_squeezeformer (at a narrow width)
trains on JAX with TensorFlow absent."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from asl_keras import config
from asl_keras.models.recognizer import build_recognizer
from tests.paths import REPO, checkout_env, config_path

# A narrow width with every flag of the configs kept (and the CTC head's path too): the
# backend-neutral code does not depend on the size.
NARROW = ["model.ctc_loss_weight=0.3", "model.dim=16", "model.blocks=2",
          "model.ffn_dims=[16, 24, 32]", "model.decoder_ffn=32", "model.kernel_size=5"]


@pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                    reason="jax is not installed (it comes with the test extra)")
def test_the_models_build_run_and_differentiate_on_jax_without_tensorflow():
    configs = [config_path("cfg_2.yaml"), config_path("cfg_2_squeezeformer.yaml")]
    env = checkout_env({**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"})
    done = subprocess.run([sys.executable, "-m", "tests.models.backend_check", *configs, "--",
                           *NARROW],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["config"] for r in results] == configs
    for r in results:
        assert r["backend"] == "jax"
        # the same model as on TensorFlow, weight for weight
        tf_model = build_recognizer(config.load(r["config"], NARROW))
        assert r["params"] == sum(int(np.prod(v.shape)) for v in tf_model.trainable_variables)
        assert 0 < r["loss"] < 50 and r["grads_finite"]
        # late in the schedule (step 10**6, skip rates ~0) every weight on the training path gets
        # a gradient; a branch detached from the loss would not
        assert r["nonzero_grads"] >= 0.95 * r["grads"], r
