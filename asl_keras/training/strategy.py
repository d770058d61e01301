"""Pick the tf.distribute strategy and the mixed-precision policy for this machine.

Order for `auto`: a TPU (cluster resolver) -> several workers (a `TF_CONFIG` naming >1
worker) -> several GPUs (Mirrored) -> the default single-device strategy. `--strategy`
overrides. Precision `auto`: bf16 on TPU, fp16 (with loss scaling) on GPU, fp32 on CPU.
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf


class StrategyError(RuntimeError):
    """The requested strategy cannot run here."""


def _tpu():
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.NotFoundError, RuntimeError) as e:
        return None, e
    return tf.distribute.TPUStrategy(resolver), None


def _workers() -> int:
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def pick_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The strategy named by `name` (see module docstring)."""
    if name in ("auto", "tpu"):
        strategy, err = _tpu()
        if strategy is not None:
            return strategy
        if name == "tpu":
            raise StrategyError(f"no TPU found ({err})")
    if name == "multiworker" or (name == "auto" and _workers() > 1):
        if _workers() < 1:
            raise StrategyError("multiworker needs TF_CONFIG with a cluster spec")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def precision_policy(strategy: tf.distribute.Strategy, requested: str = "auto") -> str:
    """The Keras dtype policy name for this strategy's devices."""
    if requested != "auto":
        return requested
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "float32"


def set_precision(policy: str) -> None:
    keras.mixed_precision.set_global_policy(policy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints and logs (worker 0 / the only process)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker"
                                              and resolver.task_id == 0)
