"""The TFRecord schema: one `tf.train.Example` per sequence.

Frames are stored raw (`[T, 390]` float32 in `SELECTED_COLUMNS` order, NaN kept, as bytes) so
preprocessing can change without reconverting. Round-2 scores are *not* stored: they are joined
by `sequence_id` at training time (see `data/pipeline.py`), so a new score table needs no new
records.
"""

from __future__ import annotations

import numpy as np

from asl_keras.landmarks import SELECTED_COLUMNS
from asl_keras.runtime import tf

NUM_COLUMNS = len(SELECTED_COLUMNS)
SHARD_SUFFIX = ".tfrecord"

FEATURES = {
    "sequence_id": tf.io.FixedLenFeature([], tf.int64),
    "participant_id": tf.io.FixedLenFeature([], tf.int64),
    "file_id": tf.io.FixedLenFeature([], tf.int64),
    "phrase": tf.io.FixedLenFeature([], tf.string),
    "token_ids": tf.io.VarLenFeature(tf.int64),
    "n_frames": tf.io.FixedLenFeature([], tf.int64),
    "frames": tf.io.FixedLenFeature([], tf.string),
    "fold": tf.io.FixedLenFeature([], tf.int64),
    "is_supplemental": tf.io.FixedLenFeature([], tf.int64),
}


def _int(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=np.atleast_1d(values).tolist()))


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def serialize(seq, token_ids: np.ndarray, fold: int) -> bytes:
    """Encode a `kaggle.Sequence` with its character ids and fold as a serialized Example."""
    frames = np.ascontiguousarray(seq.frames, dtype="<f4")
    feature = {
        "sequence_id": _int(seq.sequence_id),
        "participant_id": _int(seq.participant_id),
        "file_id": _int(seq.file_id),
        "phrase": _bytes(seq.phrase.encode("utf-8")),
        "token_ids": _int(token_ids),
        "n_frames": _int(frames.shape[0]),
        "frames": _bytes(frames.tobytes()),
        "fold": _int(fold),
        "is_supplemental": _int(int(seq.is_supplemental)),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
        deterministic=True)  # sorted map keys: identical bytes in every process


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Graph-mode parser: a serialized Example -> dict with `frames` `[T, 390]` float32."""
    ex = tf.io.parse_single_example(serialized, FEATURES)
    ex["token_ids"] = tf.cast(tf.sparse.to_dense(ex["token_ids"]), tf.int32)
    frames = tf.io.decode_raw(ex["frames"], tf.float32, little_endian=True)
    ex["frames"] = tf.reshape(frames, [-1, NUM_COLUMNS])
    return ex


def decode_numpy(serialized: bytes) -> dict:
    """Eager, TF-graph-free decoding of one record (verification, tests, tools)."""
    f = tf.train.Example.FromString(serialized).features.feature
    out = {k: f[k].int64_list.value[0] for k in
           ("sequence_id", "participant_id", "file_id", "n_frames", "fold", "is_supplemental")}
    out["phrase"] = f["phrase"].bytes_list.value[0].decode("utf-8")
    out["token_ids"] = np.asarray(f["token_ids"].int64_list.value, dtype=np.int32)
    out["frames"] = np.frombuffer(f["frames"].bytes_list.value[0], dtype="<f4").reshape(
        -1, NUM_COLUMNS)
    return out


def read_shard(path: str):
    """Yield the decoded records of one shard file, in file order."""
    for raw in tf.data.TFRecordDataset(path):
        yield decode_numpy(raw.numpy())


def list_shards(records_dir: str) -> list[str]:
    """All shard files of a conversion folder, sorted (works for `gs://` paths)."""
    return sorted(tf.io.gfile.glob(f"{records_dir.rstrip('/')}/*{SHARD_SUFFIX}"))
