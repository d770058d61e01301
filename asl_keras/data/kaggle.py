"""Read the Kaggle competition layout: metadata CSVs and landmark parquet files.

Layout (docs/competition.md, 'Kaggle folder layout'): `train.csv` and
`supplemental_metadata.csv` with columns `path, file_id, sequence_id, participant_id, phrase`;
one parquet file per `file_id` holding many sequences (index `sequence_id`, column `frame`,
1,629 float landmark columns).
Only the 390 `SELECTED_COLUMNS` are read, one parquet file at a time (real files are ~1 GB).
Every file is opened through `tf.io.gfile`, so the folder may be local, `gs://` or `ram://`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from asl_keras.landmarks import SELECTED_COLUMNS
from asl_keras.runtime import tf

METADATA_FILES = {"train.csv": False, "supplemental_metadata.csv": True}  # name -> is_supplemental
METADATA_COLUMNS = ("path", "file_id", "sequence_id", "participant_id", "phrase")


class KaggleFormatError(ValueError):
    """Input that does not follow the Kaggle layout; the message names file, row and column."""


class ArrowFile(tf.io.gfile.GFile):
    """A `tf.io.gfile.GFile` that pyarrow accepts as a file object.

    pyarrow asks a file object whether it is `closed`, which GFile does not say. Through it a
    parquet file is read or written on any filesystem TensorFlow knows, and a reader fetches
    only the byte ranges of the columns it asks for.
    """

    closed = False

    def close(self) -> None:
        super().close()
        self.closed = True


@dataclasses.dataclass(frozen=True)
class Sequence:
    """One signed phrase: frames `[T, 390]` float32 in `SELECTED_COLUMNS` order, NaN kept."""

    sequence_id: int
    participant_id: int
    file_id: int
    phrase: str
    is_supplemental: bool
    frames: np.ndarray


def read_metadata(data_dir: str) -> pd.DataFrame:
    """Both metadata CSVs as one table with an `is_supplemental` column and a `row` (CSV line).

    A missing supplemental CSV is allowed (some users convert train only); a missing
    `train.csv`, a missing column, a non-integer id or a duplicate `sequence_id` is an error.
    """
    tables = []
    for name, is_supp in METADATA_FILES.items():
        path = os.path.join(data_dir, name)
        if not tf.io.gfile.exists(path):
            if is_supp:
                continue
            raise KaggleFormatError(f"{path}: not found (expected the Kaggle train.csv)")
        with tf.io.gfile.GFile(path, "r") as f:
            df = pd.read_csv(f, dtype={"phrase": str}, keep_default_na=False)
        missing = [c for c in METADATA_COLUMNS if c not in df.columns]
        if missing:
            raise KaggleFormatError(f"{path}: missing column(s) {missing}; "
                                    f"expected {list(METADATA_COLUMNS)}")
        for col in ("file_id", "sequence_id", "participant_id"):
            numeric = pd.to_numeric(df[col], errors="coerce")
            bad = numeric.isna() | (numeric != numeric.round())
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise KaggleFormatError(f"{path}: row {i + 2}, column {col!r}: expected an "
                                        f"integer, got {df[col].iloc[i]!r}")
            df[col] = numeric.astype(np.int64)
        df = df[list(METADATA_COLUMNS)].copy()
        df["is_supplemental"] = is_supp
        df["source"] = name
        df["row"] = np.arange(len(df)) + 2  # line number in the CSV (header is line 1)
        tables.append(df)
    meta = pd.concat(tables, ignore_index=True)
    dup = meta["sequence_id"].duplicated(keep=False)
    if dup.any():
        rows = meta[dup].sort_values("sequence_id").head(2)
        where = " and ".join(f"{r.source} row {r.row}" for r in rows.itertuples())
        raise KaggleFormatError(f"duplicate sequence_id {int(rows.sequence_id.iloc[0])} in {where}")
    return meta


def _check_schema(path: str, schema: pa.Schema) -> None:
    names = set(schema.names)
    missing = [c for c in ("sequence_id", "frame", *SELECTED_COLUMNS) if c not in names]
    if missing:
        raise KaggleFormatError(f"{path}: missing {len(missing)} landmark column(s), "
                                f"first {missing[:5]}")
    for col in ("frame", *SELECTED_COLUMNS):
        t = schema.field(col).type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
            raise KaggleFormatError(f"{path}: column {col!r} has type {t}, expected a number")


def read_parquet(path: str) -> dict[int, np.ndarray]:
    """Frames of every sequence in one landmark file: `{sequence_id: [T, 390] float32}`.

    Reads only `sequence_id`, `frame` and the selected columns; rows are sorted by frame
    within each sequence (stable, so equal frame numbers keep file order).
    """
    with ArrowFile(path, "rb") as f:
        try:
            pf = pq.ParquetFile(f)
        except (pa.ArrowInvalid, OSError, tf.errors.OpError) as e:
            raise KaggleFormatError(f"{path}: not a readable parquet file ({e})") from e
        _check_schema(path, pf.schema_arrow)
        try:
            table = pf.read(columns=["sequence_id", "frame", *SELECTED_COLUMNS])
        except (pa.ArrowInvalid, OSError, tf.errors.OpError) as e:
            raise KaggleFormatError(f"{path}: truncated or corrupt parquet data ({e})") from e
    seq = table.column("sequence_id").to_numpy().astype(np.int64)
    frame = table.column("frame").to_numpy().astype(np.int64)
    values = np.empty((table.num_rows, len(SELECTED_COLUMNS)), dtype=np.float32)
    for j, name in enumerate(SELECTED_COLUMNS):
        values[:, j] = table.column(name).to_numpy(zero_copy_only=False)
    del table
    order = np.lexsort((frame, seq))  # by sequence, then frame; stable
    seq, values = seq[order], values[order]
    starts = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
    ends = np.r_[starts[1:], len(seq)]
    return {int(seq[s]): values[s:e] for s, e in zip(starts, ends, strict=True)}


def iter_file(data_dir: str, rows: pd.DataFrame, skipped: list[dict],
              unlisted: list[int]) -> Iterator[Sequence]:
    """Yield the sequences of the metadata `rows` (all from one parquet file) in CSV order.

    A row with no frames in the file (absent, i.e. 0 frames) is appended to `skipped` with its
    reason instead of being yielded; sequences in the file that no row names go to `unlisted`.
    """
    path = os.path.join(data_dir, rows["path"].iloc[0])
    by_id = read_parquet(path)
    unlisted.extend(sorted(set(by_id) - set(rows["sequence_id"].tolist())))
    for r in rows.itertuples():
        frames = by_id.get(int(r.sequence_id))
        if frames is None or len(frames) == 0:
            skipped.append(skip_record(r, f"0 frames: sequence absent from {r.path}"))
            continue
        yield Sequence(int(r.sequence_id), int(r.participant_id), int(r.file_id), r.phrase,
                       bool(r.is_supplemental), frames)


def skip_record(row, reason: str) -> dict:
    """How a skipped metadata row is reported in the manifest."""
    return {"sequence_id": int(row.sequence_id), "source": row.source, "row": int(row.row),
            "reason": reason}
