"""Score an exported model the way the competition scorer does, or Keras checkpoints likewise.

    python -m asl_keras.evaluate --model DIR/model.tflite --data-dir KAGGLE_DIR [--fold K]
        [--limit N] [--threads N]
    python -m asl_keras.evaluate --keras-config C --checkpoints A [B ...] --data-dir KAGGLE_DIR
        [--fold K] [--limit N]

Both may be given at once; the report then shows the difference.

Data: competition-train rows of `train.csv` (supplemental rows are never validated, as in the
folds), all of them or those of fold K (`folds.assign_folds` over the metadata), the first N
with `--limit`. Frames are read as the harness reads them: pyarrow, only the
`selected_columns` of the model's `inference_args.json` (for Keras: `SELECTED_COLUMNS`, the
same list) in that order, rows in file order, float32 with NaN kept.

TFLite: one `serving_default` call per sequence on the LiteRT interpreter (the model and its
`inference_args.json` are read through `tf.io.gfile`, so `gs://` and `ram://` paths work),
argmax rows mapped through the character map; latency p50/p95 per call and the time projected
for a hidden test set of HIDDEN_TEST_SEQUENCES sequences. Keras: the same frames through
`export.tflite.keras_texts` (same preprocessing, greedy decoding and dummy-phrase rule, the
latter from `asl_keras.inference`).
Scores: normalized total Levenshtein (the official metric) and the Damerau variant of the
reference's CV.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Sequence

import numpy as np
import pyarrow.parquet as pq

from asl_keras import config
from asl_keras import decoding as decodings
from asl_keras.data import folds, kaggle
from asl_keras.decoding import Decoding
from asl_keras.export import submission
from asl_keras.export import tflite as export
from asl_keras.landmarks import SELECTED_COLUMNS
from asl_keras.training.metrics import normalized_total

# The hidden test set's size was never published (docs/competition.md, 'Limits'). Assumed: the
# competition train set's 67,208 sequences, an upper-end guess that keeps the projection
# conservative against the 5-hour limit.
HIDDEN_TEST_SEQUENCES = 67_208
TIME_LIMIT_HOURS = 5.0


@dataclasses.dataclass(frozen=True)
class Sample:
    """One scored sequence: frames `[T, len(columns)]` float32 as the harness passes them."""

    phrase: str
    frames: np.ndarray


@dataclasses.dataclass
class Scores:
    """Predictions of one scorer and their metrics; latencies (seconds) only for TFLite."""

    name: str
    predictions: list[str]
    score: float
    damerau: float
    seconds: float
    latencies: np.ndarray | None = None

    def report(self) -> str:
        line = (f"{self.name}: score {self.score:.4f} (normalized Levenshtein), "
                f"{self.damerau:.4f} (Damerau), {self.seconds:.1f} s")
        if self.latencies is None:
            return line
        ms = 1000 * self.latencies
        hours = HIDDEN_TEST_SEQUENCES * float(np.mean(self.latencies)) / 3600
        return (f"{line}\n  latency per sequence: p50 {np.percentile(ms, 50):.1f} ms, "
                f"p95 {np.percentile(ms, 95):.1f} ms, mean {np.mean(ms):.1f} ms\n"
                f"  projected for {HIDDEN_TEST_SEQUENCES:,} hidden test sequences (assumed "
                f"size): {hours:.2f} h (limit {TIME_LIMIT_HOURS:g} h)")


def select_rows(data_dir: str, fold: int | None = None, limit: int | None = None):
    """Metadata rows to score: competition train (of `fold` if given), CSV order, first `limit`."""
    meta = kaggle.read_metadata(data_dir)
    keep = ~meta["is_supplemental"]
    if fold is not None:
        keep &= folds.assign_folds(meta) == fold
    rows = meta[keep]
    if rows.empty:
        raise ValueError(f"no competition-train rows to score in {data_dir} (fold {fold})")
    return rows.head(limit) if limit else rows


def read_file(path: str, columns: Sequence[str]) -> dict[int, np.ndarray]:
    """`{sequence_id: [T, len(columns)] float32}` of one parquet file, rows in file order.

    Unlike `kaggle.read_parquet` (which sorts frames for training), nothing is reordered:
    the harness hands the model the file's rows as they are.
    """
    table = pq.read_table(path, columns=["sequence_id", *columns])
    ids = table.column("sequence_id").to_numpy()
    values = np.stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float32)
                       for c in columns], axis=1)
    order = np.argsort(ids, kind="stable")  # group by sequence, file order within
    starts = np.flatnonzero(np.r_[True, ids[order][1:] != ids[order][:-1]])
    groups = np.split(order, starts[1:])
    return {int(ids[g[0]]): values[g] for g in groups}


def load_samples(data_dir: str, columns: Sequence[str], fold: int | None = None,
                 limit: int | None = None) -> list[Sample]:
    """The selected sequences with their frames; rows absent from their file are skipped."""
    samples = []
    rows = select_rows(data_dir, fold, limit)
    for path, group in rows.groupby("path", sort=False):
        frames = read_file(os.path.join(data_dir, path), columns)
        samples += [Sample(r.phrase, frames[int(r.sequence_id)])
                    for r in group.itertuples() if int(r.sequence_id) in frames]
    return samples


def _scores(name: str, samples: Sequence[Sample], predictions: list[str], seconds: float,
            latencies=None) -> Scores:
    truths = [s.phrase for s in samples]
    return Scores(name, predictions, normalized_total(truths, predictions),
                  normalized_total(truths, predictions, damerau=True), seconds, latencies)


def score_tflite(model_path: str, samples: Sequence[Sample],
                 threads: int | None = None) -> Scores:
    """Run the exported model one sequence at a time, as the competition scorer does."""
    run = export.runner(model_path, num_threads=threads)
    predictions, latencies = [], []
    start = time.perf_counter()
    for s in samples:
        t0 = time.perf_counter()
        predictions.append(export.tflite_text(run, s.frames))
        latencies.append(time.perf_counter() - t0)
    return _scores("tflite", samples, predictions, time.perf_counter() - start,
                   np.asarray(latencies))


def score_keras(config_path: str, checkpoints: Sequence[str], samples: Sequence[Sample],
                decoding: Decoding | None = None) -> Scores:
    """Score float32 Keras models of `export.load_models` checkpoints on the same frames (they
    must be in SELECTED_COLUMNS order, which `inference_args.json` lists), decoded in the mode
    `decoding` (None: the export's default for these models)."""
    cfg = config.load(config_path)
    models = export.load_models(cfg, checkpoints)
    decoding = decodings.resolve(models, decoding)
    start = time.perf_counter()
    predictions = export.keras_texts(models, cfg.data.max_len, [s.frames for s in samples],
                                     decoding=decoding)
    return _scores("keras", samples, predictions, time.perf_counter() - start)


def evaluate(data_dir: str, model: str | None = None, keras_config: str | None = None,
             checkpoints: Sequence[str] = (), fold: int | None = None, limit: int | None = None,
             threads: int | None = None, decoding: Decoding | None = None) -> list[Scores]:
    """Score the TFLite model and/or the Keras checkpoints (decoded as `decoding`) on the same
    samples."""
    columns = submission.selected_columns(model) if model else list(SELECTED_COLUMNS)
    if keras_config and columns != list(SELECTED_COLUMNS):
        raise ValueError("the model's inference_args.json does not list SELECTED_COLUMNS; "
                         "Keras checkpoints cannot be scored on its frames")
    samples = load_samples(data_dir, columns, fold, limit)
    results = []
    if model:
        results.append(score_tflite(model, samples, threads))
    if keras_config:
        results.append(score_keras(keras_config, checkpoints, samples, decoding))
    return results


def report(results: Sequence[Scores], n_samples: int, where: str) -> str:
    """The printed report: one block per scorer, then the difference when there are two."""
    lines = [f"sequences: {n_samples} ({where})", *(r.report() for r in results)]
    if len(results) == 2:
        lines.append(f"difference tflite - keras: {results[0].score - results[1].score:+.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m asl_keras.evaluate", description=__doc__)
    p.add_argument("--data-dir", required=True, help="Kaggle-layout folder (train.csv, ...)")
    p.add_argument("--model", help="model.tflite (inference_args.json next to it)")
    p.add_argument("--keras-config", help="run config of the Keras checkpoints")
    p.add_argument("--checkpoints", nargs="+", default=[],
                   help=".weights.h5 files or 1st-place state_dicts (.pth, .pt, .npz)")
    p.add_argument("--fold", type=int, help="score only this fold's train rows")
    p.add_argument("--limit", type=int, help="score only the first N rows")
    p.add_argument("--threads", type=int, help="LiteRT interpreter threads (default: runtime's)")
    decodings.add_arguments(p, "of the Keras checkpoints (give the exported file's)")
    args = p.parse_args(argv)
    decoding = decodings.from_arguments(args, p)
    if not args.model and not args.keras_config:
        p.error("give --model and/or --keras-config with --checkpoints")
    if args.keras_config and not args.checkpoints:
        p.error("--keras-config needs --checkpoints")
    results = evaluate(args.data_dir, args.model, args.keras_config, args.checkpoints,
                       args.fold, args.limit, args.threads, decoding)
    where = (f"competition-train rows{'' if args.fold is None else f' of fold {args.fold}'} "
             f"in {args.data_dir}; interpreter threads: {args.threads or 'runtime default'}")
    print(report(results, len(results[0].predictions), where))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
