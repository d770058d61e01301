"""The whole chain on TensorFlow's in-memory filesystem, as a TPU run does on `gs://`.

Synthetic Kaggle data, records, run folder and export all live under `ram://`; the commands are
the user's (`train_tf.py`, `export_tflite.py`), and the working directory must stay empty:
any file written with `open()`/`os` instead of `tf.io.gfile` would land there.
"""

from __future__ import annotations

import os
import uuid

import pytest

import export_tflite
from asl_keras import config
from asl_keras.runtime import tf
from asl_keras.training import run
from tests.paths import config_path


@pytest.mark.slow
def test_generate_convert_train_resume_export_in_ram(tmp_path, monkeypatch):
    base = f"ram://{uuid.uuid4().hex}"
    demo = config_path("demo.yaml")
    overrides = [f"data.kaggle_dir={base}/kaggle", f"data.records={base}/records",
                 "data.synthetic={train: 96, supplemental: 16, participants: 4, per_file: 48}",
                 f"train.runs_dir={base}/runs", "data.batch_size=16", "model.blocks=1",
                 "train.eval_batch_size=32"]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    def train(*extra):
        return run.main_train(run.parse_args(["--config", demo, *extra, *overrides]))

    assert train("train.epochs=1") == run.EXIT_FINISHED
    run_dir = f"{base}/runs/demo_fold0_seed0"
    assert train("--resume", "--force-resume", "train.epochs=2") == run.EXIT_FINISHED
    with tf.io.gfile.GFile(f"{run_dir}/history.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["1", "2"]
    saved = config.load(f"{run_dir}/config.yaml")  # the run's own config, read from ram://
    assert saved.train.epochs == 2 and saved.model.blocks == 1

    assert export_tflite.main(["--config", f"{run_dir}/config.yaml", "--checkpoints",
                               f"{run_dir}/model.weights.h5", "--out", f"{base}/export",
                               "--no-fp16", "--submission", "--check-clips", "0"]) == 0
    exported = tf.io.gfile.listdir(f"{base}/export")
    assert {"model.tflite", "inference_args.json", "submission.zip"} <= set(exported)
    assert tf.io.gfile.stat(f"{base}/export/model.tflite").length > 100_000
    assert {"manifest.json", "index.csv"} <= set(tf.io.gfile.listdir(f"{base}/records"))
    assert os.listdir(work) == []
