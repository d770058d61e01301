import uuid

import pandas as pd
import pytest
import tensorflow as tf

from asl_keras.data import pipeline
from asl_keras.training import oof


def test_merge_averages_seeds_and_gives_supplemental_half(synthetic_records, tmp_path):
    index = pipeline.read_index(str(synthetic_records))
    comp = index[index.is_supplemental == 0]
    for seed, pred in ((0, "exact"), (1, "empty")):
        run = tmp_path / f"run{seed}"
        run.mkdir()
        rows = pd.DataFrame({"sequence_id": comp.sequence_id, "phrase": comp.phrase,
                             "prediction": comp.phrase if pred == "exact" else ""})
        rows.to_csv(run / "predictions_epoch3.csv", index=False)
        rows.assign(prediction="zzz").to_csv(run / "predictions_epoch1.csv", index=False)
    table, missing = oof.merge([str(tmp_path / "run0"), str(tmp_path / "run1")],
                               str(synthetic_records))
    scores = table.set_index("sequence_id")["score"]
    assert missing == []
    assert scores[comp.sequence_id].tolist() == pytest.approx([0.5] * len(comp))  # (1+0)/2
    supp = index[index.is_supplemental == 1].sequence_id
    assert (scores[supp] == oof.SUPPLEMENTAL_SCORE).all() and len(table) == len(index)


def test_missing_predictions_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no predictions_epoch"):
        oof.last_predictions(str(tmp_path))


def test_runs_and_output_in_a_ram_filesystem(synthetic_records, tmp_path, monkeypatch):
    """Run folders and the score table go through tf.io.gfile (like gs://), not local files."""
    index = pipeline.read_index(str(synthetic_records))
    comp = index[index.is_supplemental == 0]
    root = f"ram://{uuid.uuid4().hex}"
    tf.io.gfile.makedirs(f"{root}/run0")
    with tf.io.gfile.GFile(f"{root}/run0/predictions_epoch2.csv", "w") as f:
        pd.DataFrame({"sequence_id": comp.sequence_id, "phrase": comp.phrase,
                      "prediction": comp.phrase}).to_csv(f, index=False)
    monkeypatch.chdir(tmp_path)
    assert oof.main(["--runs", f"{root}/run0", "--records", str(synthetic_records),
                     "--out", f"{root}/oof.csv"]) == 0
    with tf.io.gfile.GFile(f"{root}/oof.csv") as f:
        table = pd.read_csv(f).set_index("sequence_id")["score"]
    assert table[comp.sequence_id].tolist() == pytest.approx([1.0] * len(comp))
    assert len(table) == len(index) and list(tmp_path.iterdir()) == []
