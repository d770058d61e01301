"""Shared test helpers: two logical CPUs for MirroredStrategy (and fresh collective keys for
each test's strategies), the mixed_float16 policy, tiny hand-made Kaggle folders for exact,
readable bad-input cases, and the rigged tiny checkpoints the export and benchmark tests
share."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from asl_keras import landmarks

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _two_logical_cpus() -> None:
    """Split the CPU into 2 logical devices (before TF starts) so MirroredStrategy can be
    tested on one machine; single-device code keeps using /cpu:0."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


_two_logical_cpus()


@pytest.fixture(autouse=True)
def fresh_collective_keys():
    """Collective keys no earlier MirroredStrategy of this process used, for the strategies a
    test makes. TensorFlow keeps each collective op's parameters by key for the whole process,
    and every new strategy starts at the same keys: the first all-reduce of a later strategy
    with another shape fails ("Shape mismatch in the collective instance 100"). TensorFlow's
    own tests move the base the same way (`strategy_combinations`)."""
    import tensorflow as tf

    tf.distribute.MirroredStrategy._collective_key_base += 100_000


@pytest.fixture
def without_graph_optimizations():
    """Grappler off for the test, for tests whose first call is mostly graph optimisation of a
    large training graph (both replicas, forward, backward and the optimizer's two branches):
    its passes took 40 of the 140 s of a full-size two-replica step. Outputs are unchanged."""
    import tensorflow as tf

    before = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    yield
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


@pytest.fixture
def float32_afterwards():
    """The float32 policy again after the test (a Trainer sets its config's policy)."""
    yield
    import keras

    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def mixed_float16(float32_afterwards):
    """Keras' `mixed_float16` policy (what `auto` picks on GPUs) for the test."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")


def random_frames(rng: np.random.Generator, n: int, nan_hand: bool = True) -> np.ndarray:
    """`[n, 1629]` float32 raw frames; the left hand is NaN in every other frame."""
    x = rng.random((n, len(landmarks.raw_columns())), dtype=np.float32)
    if nan_hand:
        cols = [i for i, c in enumerate(landmarks.raw_columns()) if "left_hand" in c]
        x[::2, cols] = np.nan
    return x


def write_parquet(path: str, sequences: dict[int, np.ndarray], columns=None) -> None:
    """Write `{sequence_id: [T, 1629]}` in the Kaggle wide layout (index sequence_id, frame)."""
    columns = columns or landmarks.raw_columns()
    parts = []
    for sid, frames in sequences.items():
        df = pd.DataFrame(frames, columns=columns)
        df.insert(0, "frame", np.arange(len(frames), dtype=np.int16))
        df.index = pd.Index(np.full(len(frames), sid, dtype=np.int64), name="sequence_id")
        parts.append(df)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pd.concat(parts).to_parquet(path)


@pytest.fixture
def tiny_kaggle(tmp_path):
    """A 2-file Kaggle folder: train (6 sequences, 3 signers) and supplemental (2 sequences).

    Returns (folder, {sequence_id: raw [T, 1629] frames}).
    """
    rng = np.random.default_rng(0)
    data = tmp_path / "kaggle"
    frames = {}
    rows = []
    phrases = ["3 creekhouse", "scales/kuhaylah", "+20-4703-88149", "1600 fire water",
               "www.a.com/b", "42 main st"]
    train = {}
    for i, phrase in enumerate(phrases):
        sid = 1000 + i
        train[sid] = frames[sid] = random_frames(rng, 5 + 3 * i)
        rows.append(("train_landmarks/11.parquet", 11, sid, 100 + i % 3, phrase))
    write_parquet(str(data / "train_landmarks/11.parquet"), train)
    pd.DataFrame(rows, columns=["path", "file_id", "sequence_id", "participant_id", "phrase"]
                 ).to_csv(data / "train.csv", index=False)
    supp = {2000: random_frames(rng, 9), 2001: random_frames(rng, 4)}
    frames.update(supp)
    write_parquet(str(data / "supplemental_landmarks/22.parquet"), supp)
    pd.DataFrame([("supplemental_landmarks/22.parquet", 22, 2000, 100, "we better go"),
                  ("supplemental_landmarks/22.parquet", 22, 2001, 250, "hello there")],
                 columns=["path", "file_id", "sequence_id", "participant_id", "phrase"]
                 ).to_csv(data / "supplemental_metadata.csv", index=False)
    return data, frames


@pytest.fixture(scope="session")
def synthetic_kaggle(tmp_path_factory):
    """A small synthetic Kaggle folder (80 train + 40 supplemental sequences, 6 signers)."""
    from asl_keras.data import synthetic

    out = tmp_path_factory.mktemp("synthetic") / "kaggle"
    synthetic.generate(out, 80, 40, sequences_per_file=20, n_participants=6, seed=0)
    return out


@pytest.fixture(scope="session")
def synthetic_records(synthetic_kaggle, tmp_path_factory):
    """`synthetic_kaggle` converted to TFRecords."""
    from asl_keras.data import convert

    out = tmp_path_factory.mktemp("records") / "synthetic"
    convert.convert(str(synthetic_kaggle), str(out), workers=1, progress=False)
    return out


@pytest.fixture(scope="session")
def export_root(tmp_path_factory, worker_id) -> str:
    """The run's folder for the rigged checkpoints and their exports, shared by every xdist
    worker (each worker's base temp folder sits in the run's): what `built_once` makes there is
    made once per run, not once per worker."""
    base = tmp_path_factory.getbasetemp()
    root = (base if worker_id == "master" else base.parent) / "shared_export"
    root.mkdir(exist_ok=True)
    return str(root)


def built_once(root: str, name: str, build, timeout: float = 1800) -> str:
    """`root/name`, made by `build(path)` in whichever test process asks first; the others wait
    for it. `build` writes to a temporary path that is renamed when complete, so a waiting
    process never reads a half-made artefact; a failed build is reported to the waiters."""
    import time

    path = os.path.join(root, name)
    try:
        os.close(os.open(f"{path}.lock", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if os.path.exists(f"{path}.failed"):
                raise RuntimeError(f"another test process failed to build {name}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} was not built within {timeout:.0f} s") from None
            time.sleep(0.2)
        return path
    partial = f"{path}.partial"
    try:
        build(partial)
    except BaseException:
        open(f"{path}.failed", "w").close()
        raise
    os.rename(partial, path)
    return path


@pytest.fixture(scope="session")
def checkpoints(export_root) -> tuple[str, list[str]]:
    """(config path, 2 rigged `.weights.h5` of the tiny export config: tests/export/__init__.py
    says how and why they are rigged)."""
    import keras

    from asl_keras import config
    from asl_keras.models.recognizer import build_recognizer
    from tests.export import TINY, rig, write_config

    def build(folder: str) -> None:
        os.makedirs(folder)
        # data.records names a folder that does not exist: exports check on sample clips
        # unless a test gives records, whatever the working directory holds
        values = {**TINY, "data": {**TINY["data"],
                                   "records": os.path.join(export_root, "no-records")}}
        cfg_path = write_config(os.path.join(folder, "tiny.yaml"), values)
        models = []
        for seed in (0, 1):
            keras.utils.set_random_seed(seed)
            models.append(build_recognizer(config.load(cfg_path)))
        rig(models)
        for seed, model in enumerate(models):
            model.save_weights(os.path.join(folder, f"tiny_{seed}.weights.h5"))

    folder = built_once(export_root, "checkpoints", build)
    return (os.path.join(folder, "tiny.yaml"),
            [os.path.join(folder, f"tiny_{seed}.weights.h5") for seed in (0, 1)])
