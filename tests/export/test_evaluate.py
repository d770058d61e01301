"""The competition-style scorer: harness-like reading, TFLite vs Keras scores, the report."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from asl_keras import evaluate, landmarks
from asl_keras.data import folds, kaggle, synthetic
from asl_keras.decoding import GREEDY_ATTENTION
from asl_keras.export import submission


@pytest.fixture(scope="module")
def kaggle_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "kaggle"
    synthetic.generate(out, 16, 4, sequences_per_file=6, n_participants=4, seed=0)
    return str(out)


@pytest.fixture(scope="module")
def model(fp32):
    return os.path.join(fp32, submission.MODEL_FILE)


def test_tflite_and_keras_scorers_agree(kaggle_dir, model, checkpoints):
    cfg_path, paths = checkpoints
    # the fixture's file decodes greedily with attention; the Keras side must be told
    lite, keras_ = evaluate.evaluate(kaggle_dir, model, cfg_path, paths,
                                     decoding=GREEDY_ATTENTION)
    assert len(lite.predictions) == 16  # every competition-train row, no supplemental one
    assert abs(lite.score - keras_.score) <= 0.002
    assert lite.predictions == keras_.predictions
    assert lite.latencies.shape == (16,) and keras_.latencies is None
    # by default the Keras side decodes as the export would (joint: these models have CTC
    # heads), which reads these clips differently
    (joint,) = evaluate.evaluate(kaggle_dir, None, cfg_path, paths)
    assert joint.predictions != keras_.predictions


def test_command_line_prints_the_report(kaggle_dir, model, capsys):
    assert evaluate.main(["--model", model, "--data-dir", kaggle_dir, "--fold", "0",
                          "--limit", "3", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for field in ("sequences: 3", "fold 0", "tflite: score", "(normalized Levenshtein)",
                  "latency per sequence: p50", "p95", "projected for 67,208 hidden test "
                  "sequences", "limit 5 h", "interpreter threads: 1"):
        assert field in out, (field, out)


def test_rows_are_the_fold_train_rows_in_csv_order(kaggle_dir):
    meta = kaggle.read_metadata(kaggle_dir)
    fold = folds.assign_folds(meta)
    for k in range(folds.NUM_FOLDS):
        rows = evaluate.select_rows(kaggle_dir, fold=k)
        expected = meta[(fold == k) & ~meta["is_supplemental"]]
        assert rows["sequence_id"].tolist() == expected["sequence_id"].tolist()
    assert len(evaluate.select_rows(kaggle_dir, limit=5)) == 5


def test_frames_come_in_file_order_with_the_requested_columns(tmp_path):
    """Rows are not sorted by `frame` (the harness does not sort) and sequences may
    interleave; only the requested columns are read, NaN kept."""
    columns = list(landmarks.SELECTED_COLUMNS[:4])
    values = np.arange(5 * 4, dtype=np.float32).reshape(5, 4)
    values[1, 2] = np.nan
    table = pd.DataFrame(values, columns=columns)
    table.insert(0, "frame", [2, 0, 5, 1, 3])
    table["not_selected"] = 1.0
    table.index = pd.Index([7, 7, 9, 7, 9], name="sequence_id")
    path = tmp_path / "file.parquet"
    table.to_parquet(path)
    frames = evaluate.read_file(str(path), columns)
    np.testing.assert_array_equal(frames[7], values[[0, 1, 3]])
    np.testing.assert_array_equal(frames[9], values[[2, 4]])
    assert frames[7].dtype == np.float32
