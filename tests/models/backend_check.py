"""Run by test_backends.py in a fresh interpreter: the models on a non-TF backend.

`KERAS_BACKEND` is set by the caller; `tensorflow` is made unimportable first, so any use of
TensorFlow on this path fails loudly. For each config: build, a training-mode forward pass, the
loss, and its gradient (`stateless_call` under `jax.value_and_grad`); prints one JSON line.
"""

from __future__ import annotations

import json
import sys

sys.modules["tensorflow"] = None  # `import tensorflow` now raises ImportError

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from asl_keras import config, vocab  # noqa: E402
from asl_keras.models.recognizer import build_recognizer  # noqa: E402


def batch(rng: np.random.Generator, size: int = 2, frames: int = 48) -> dict:
    labels = np.stack([vocab.to_labels(vocab.encode(p)) for p in ("hello there", "42 main st")])
    mask = np.ones((size, frames), "float32")
    mask[1, frames // 2:] = 0
    return {"landmarks": rng.normal(size=(size, frames, 130, 3)).astype("float32"),
            "mask": mask, "labels": labels[:size].astype("int32"),
            "score": np.ones(size, "float32")}


def check(path: str, overrides: list[str]) -> dict:
    cfg = config.load(path, overrides)
    model = build_recognizer(cfg)
    inputs = batch(np.random.default_rng(0))
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_fn(weights):
        out, _ = model.stateless_call(weights, non_trainable, inputs, training=True, step=10**6)
        return keras.ops.mean(model.per_sample_loss(inputs, out))

    loss, grads = jax.value_and_grad(loss_fn)(trainable)
    norms = [float(jax.numpy.linalg.norm(g)) for g in grads]
    return {"config": path, "backend": keras.backend.backend(), "loss": float(loss),
            "params": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
            "grads_finite": bool(np.all(np.isfinite(norms))),
            "nonzero_grads": sum(n > 0 for n in norms), "grads": len(norms)}


if __name__ == "__main__":
    # configs, then "--" and the overrides every config is loaded with
    split = sys.argv.index("--")
    print(json.dumps([check(p, sys.argv[split + 1:]) for p in sys.argv[1:split]]))
