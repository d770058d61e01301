"""Pick the tf.distribute strategy and the mixed-precision policy for this machine.

Order for `auto`: a TPU, when this machine looks like it has one -> several workers (a
`TF_CONFIG` naming >1 worker) -> several GPUs (Mirrored) -> the default single-device strategy.
`--strategy` overrides. Precision `auto`: bf16 on TPU, fp16 (with loss scaling) on GPU, fp32 on
CPU.

A TPU is expected when one of `TPU_ENV_VARS` is set (the Cloud TPU variables TensorFlow's
resolver reads; Colab's TPU-node address; what TPU VMs set, Kaggle's and Colab's included) or a
TPU device file (`TPU_DEVICE_FILES`) exists on a machine where TensorFlow sees no GPU (recent
NVIDIA drivers create `/dev/accel*` too). A TPU that is asked for or expected but cannot be
initialised is a `StrategyError` naming every resolver tried and its error: a TPU session never
trains on its host CPU by accident.
"""

from __future__ import annotations

import glob
import json
import os

import keras

from asl_keras.runtime import tf


class StrategyError(RuntimeError):
    """The requested strategy cannot run here."""


# Read by TensorFlow's TPUClusterResolver itself (Cloud TPU nodes, GKE).
RESOLVER_ENV_VARS = ("TPU_NAME", "TPU_CONFIG", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS")
# Colab's (legacy) TPU node: the worker's host:port, reached over gRPC.
COLAB_TPU_ADDR = "COLAB_TPU_ADDR"
# Set on TPU VMs: Google Cloud's and GKE's (TPU_ACCELERATOR_TYPE, TPU_WORKER_ID), Kaggle's
# (TPU_WORKER_ID, TPU_CHIPS_PER_HOST_BOUNDS; no TPU_NAME) and Colab's. Not TPU_SKIP_MDS_QUERY,
# which Kaggle's image sets too but JAX's import sets on every machine without TPU chips.
TPU_VM_ENV_VARS = ("TPU_ACCELERATOR_TYPE", "TPU_WORKER_ID", "TPU_CHIPS_PER_HOST_BOUNDS",
                   "COLAB_TPU_1VM")
TPU_ENV_VARS = (*RESOLVER_ENV_VARS, COLAB_TPU_ADDR, *TPU_VM_ENV_VARS)
# TPU chips on a TPU VM: /dev/accel* (v2-v4), VFIO groups (v5e and later).
TPU_DEVICE_FILES = ("/dev/accel*", "/dev/vfio/[0-9]*")


def tpu_signals() -> list[str]:
    """Why this machine looks like a TPU host: the set TPU variables and TPU device files."""
    found = [f"{k}={os.environ[k]}" for k in TPU_ENV_VARS if os.environ.get(k)]
    if not tf.config.list_physical_devices("GPU"):
        found += sorted(f for pattern in TPU_DEVICE_FILES for f in glob.glob(pattern))
    return found


def tpu_addresses(signals: list[str]) -> list[str | None]:
    """The `tpu` arguments of TPUClusterResolver to try, in order, for these signals.

    None lets the resolver read its own variables; `grpc://` reaches Colab's TPU node; "local"
    is the chips of this TPU VM. Without any signal (`--strategy tpu`): None, then "local".
    """
    names = {s.split("=")[0] for s in signals}
    tries: list[str | None] = []
    if COLAB_TPU_ADDR in names:
        tries.append(f"grpc://{os.environ[COLAB_TPU_ADDR]}")
    if names & set(RESOLVER_ENV_VARS) or not signals:
        tries.append(None)
    if names - {*RESOLVER_ENV_VARS, COLAB_TPU_ADDR} or not signals:  # VM variables, devices
        tries.append("local")
    return tries


def connect_tpu(tpu: str | None) -> tf.distribute.TPUStrategy:
    """Resolve, connect to and initialise the TPU at `tpu` (see `tpu_addresses`)."""
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def tpu_strategy(asked: bool) -> tf.distribute.TPUStrategy:
    """The first TPU that initialises, or a StrategyError naming each try and its error."""
    signals = tpu_signals()
    failures = []
    for tpu in tpu_addresses(signals):
        try:
            return connect_tpu(tpu)
        except Exception as e:  # any failure: each one is reported below, none hidden
            first_line = (str(e).strip().splitlines() or [""])[0][:300]
            failures.append(f"TPUClusterResolver(tpu={tpu!r}): {type(e).__name__}: {first_line}")
    why = ("--strategy tpu was given" if asked
           else f"a TPU is expected here ({', '.join(signals)})")
    raise StrategyError(f"no TPU could be initialised, but {why}; tried "
                        + "; ".join(failures) + ". Pass --strategy default (or another "
                        "strategy) to train without a TPU.")


def _tf_config() -> tuple[dict, dict]:
    """The cluster and this process's task from TF_CONFIG (empty without one)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    return tf_config.get("cluster", {}), tf_config.get("task", {})


def _workers() -> int:
    cluster, _ = _tf_config()
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _chief_kind(cluster: dict) -> str:
    """As in MultiWorkerMirroredStrategy: task 0 of `chief` when the cluster has one, else
    worker 0, is the chief."""
    return "chief" if cluster.get("chief") else "worker"


def pick_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The strategy named by `name` (see module docstring)."""
    if name == "tpu" or (name == "auto" and tpu_signals()):
        return tpu_strategy(asked=name == "tpu")
    if name == "multiworker" or (name == "auto" and _workers() > 1):
        if _workers() < 1:
            raise StrategyError("multiworker needs TF_CONFIG with a cluster spec")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


# Micro-batches per call of the training function when `train.steps_per_execution` is auto: a
# TPU stalls at every return to the host (16: two of cfg_2's 8-micro-batch updates); a GPU
# waits for each host read; on CPUs a call per micro-batch costs little (README section 4).
AUTO_STEPS_PER_EXECUTION = {"tpu": 16, "gpu": 4, "cpu": 1}


def steps_per_execution(strategy: tf.distribute.Strategy, configured: int | None) -> int:
    """`configured` micro-batches per call, or for 0/None the AUTO_STEPS_PER_EXECUTION of the
    strategy's devices."""
    return configured or AUTO_STEPS_PER_EXECUTION[device_kind(strategy)]


# Whether training steps are compiled with XLA when `train.jit_compile` is null (auto), by
# device; a TPU always compiles them. Chosen from `bench train`'s XLA on/off table.
AUTO_JIT_COMPILE = {"gpu": False, "cpu": False}


def jit_compile(strategy: tf.distribute.Strategy, configured: bool | None) -> bool:
    """Whether the training step is compiled with XLA: always on a TPU; elsewhere
    `configured`, or for None the AUTO_JIT_COMPILE of the strategy's devices."""
    kind = device_kind(strategy)
    if kind == "tpu":
        return True
    return AUTO_JIT_COMPILE[kind] if configured is None else configured


def device_kind(strategy: tf.distribute.Strategy) -> str:
    """"tpu", "gpu" or "cpu": what the strategy computes on."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"


def describe(strategy: tf.distribute.Strategy) -> str:
    """One line: the strategy's class, its replica count and the devices it computes on."""
    if strategy is tf.distribute.get_strategy():  # the default strategy has no device list
        name, devices = "default", [(tf.config.list_logical_devices("GPU")
                                     or tf.config.list_logical_devices("CPU"))[0].name]
    else:
        name, devices = type(strategy).__name__, list(strategy.extended.worker_devices)
    replicas = strategy.num_replicas_in_sync
    return (f"{name}, {replicas} replica{'s' if replicas > 1 else ''} on "
            + ", ".join(devices))


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
    """Whether this process writes checkpoints and logs: the cluster's chief (`_chief_kind`),
    or the only process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    kind = _chief_kind(resolver.cluster_spec().as_dict())
    return resolver.task_type == kind and resolver.task_id == 0


def chief_elsewhere() -> str | None:
    """The chief of the TF_CONFIG cluster when it is another process (else None), by name.

    E.g. "worker 0 at host0:12345". Read from TF_CONFIG alone, without building a strategy, so
    that work done once per cluster (preparing the records) can happen before the Trainer
    builds one. The chief is the one `is_chief` names; a process without a TF_CONFIG cluster
    is its own chief.
    """
    cluster, task = _tf_config()
    if not cluster:
        return None
    kind = _chief_kind(cluster)
    if task.get("type") == kind and int(task.get("index", 0)) == 0:
        return None
    return f"{kind} 0 at {cluster[kind][0]}"
