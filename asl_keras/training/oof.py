"""Round 1 -> round 2: merge out-of-fold predictions into the per-sequence score table.

    python -m asl_keras.training.oof --runs runs/cfg_1_fold*_seed* --records tfrecords/kaggle \\
        --out tfrecords/kaggle/oof_scores.csv

Per competition-train sequence: `score = (len(gt) - DamerauLevenshtein(gt, pred)) / len(gt)`
from each run's last `predictions_epoch*.csv` (the reference's metric; it can be negative),
averaged over the runs (seeds) that validated that sequence; supplemental sequences get 0.5,
as in the reference. The pipeline clips scores to [0, 1] when it joins them by `sequence_id`.
Competition rows that no run validated are reported, not silently filled. Run folders and the
output go through `tf.io.gfile` (local paths or `gs://`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import pandas as pd
from rapidfuzz.distance import DamerauLevenshtein

from asl_keras.data.pipeline import read_index
from asl_keras.runtime import tf

SUPPLEMENTAL_SCORE = 0.5


def last_predictions(run: str) -> str:
    """The predictions CSV of a run's last evaluated epoch."""
    files = tf.io.gfile.glob(os.path.join(run, "predictions_epoch*.csv"))
    if not files:
        raise FileNotFoundError(f"{run}: no predictions_epoch*.csv (was the run evaluated?)")
    return max(files, key=lambda p: int(re.search(r"epoch(\d+)", p).group(1)))


def merge(runs: list[str], records: str) -> tuple[pd.DataFrame, list[int]]:
    """Score table (sequence_id, score) and the competition ids no run covered."""
    per_run = []
    for run in runs:
        with tf.io.gfile.GFile(last_predictions(run)) as f:
            pred = pd.read_csv(f, dtype={"phrase": str, "prediction": str},
                               keep_default_na=False)
        pred["score"] = [(len(t) - DamerauLevenshtein.distance(t, p)) / max(len(t), 1)
                         for t, p in zip(pred["phrase"], pred["prediction"], strict=True)]
        per_run.append(pred[["sequence_id", "score"]])
    oof = pd.concat(per_run).groupby("sequence_id", as_index=False)["score"].mean()
    index = read_index(records)
    comp = index[index["is_supplemental"] == 0]["sequence_id"]
    missing = sorted(set(comp) - set(oof["sequence_id"]))
    supp = index[index["is_supplemental"] == 1][["sequence_id"]].assign(score=SUPPLEMENTAL_SCORE)
    return pd.concat([oof, supp], ignore_index=True), missing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m asl_keras.training.oof", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="round-1 run folders (all folds)")
    p.add_argument("--records", required=True, help="the converted records (for index.csv)")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    table, missing = merge(a.runs, a.records)
    with tf.io.gfile.GFile(a.out, "w") as f:
        table.to_csv(f, index=False)
    print(f"{len(table)} scores written to {a.out}")
    if missing:
        print(f"warning: {len(missing)} competition sequences have no out-of-fold prediction "
              f"(e.g. {missing[:3]}); they train with the default score 1.0", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
