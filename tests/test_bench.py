"""The latency benchmark's own pieces: worst-case weights that decode every step, the stage
graphs, operator counts, the column order of another model, and the decoding table."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from asl_keras import bench, config, landmarks, vocab
from asl_keras.export import tflite
from asl_keras.models.recognizer import build_recognizer
from tests.export import TINY


def test_worst_case_weights_decode_all_steps_on_every_clip():
    keras.utils.set_random_seed(0)
    with tflite.float32_policy():
        model = build_recognizer(config.from_dict(config.Config, {"data": TINY["data"],
                                                                  "model": TINY["model"]}))
    clips = landmarks.sample_clips(6, seed=1)
    before = tflite.runner(tflite.convert([model], TINY["data"]["max_len"], weights="fp32"))
    rows_before = [before(inputs=c)["outputs"].shape[0] for c in clips]
    bench.worst_case(model)
    model_bytes = tflite.convert([model], TINY["data"]["max_len"], weights="fp32")
    after = tflite.runner(model_bytes)
    assert [after(inputs=c)["outputs"].shape[0] for c in clips] == [vocab.LABEL_LEN] * 6
    assert rows_before != [vocab.LABEL_LEN] * 6  # the untrained model stopped early
    ops = tflite.subgraph_operators(model_bytes)
    assert ops["main"] > 0 and sum(v for k, v in ops.items() if "while_body" in k) > 20


def test_stage_graphs_cut_the_serving_graph_after_each_stage():
    keras.utils.set_random_seed(0)
    with tflite.float32_policy():
        model = build_recognizer(config.from_dict(config.Config, {"data": TINY["data"],
                                                                  "model": TINY["model"]}))
    stages = bench.stage_functions([model], TINY["data"]["max_len"])
    assert list(stages) == ["preprocessing", "encoders", "whole"]
    clip = landmarks.sample_clips(1, seed=2)[0][:40]
    encoded = tflite.runner(tflite.convert_function(stages["encoders"], [model], weights="fp32"))
    out = encoded(inputs=clip)["outputs"]
    assert out.shape == (1, 40)  # one value per encoded frame: the real frames
    pre = tflite.runner(tflite.convert_function(stages["preprocessing"], [model], weights="fp32"))
    assert pre(inputs=clip[:3])["outputs"].shape == (1, 15)  # at least MIN_FRAMES


def test_against_columns_come_from_the_inference_args_beside_the_model(tmp_path):
    other = tmp_path / "ref.tflite"
    other.write_bytes(b"")
    assert bench.against_columns(str(other)) == list(landmarks.SELECTED_COLUMNS)
    order = sorted(landmarks.SELECTED_COLUMNS, key=lambda c: (c[0], c))  # x, then y, then z
    (tmp_path / "ref_inference_args.json").write_text(json.dumps({"selected_columns": order}))
    columns = bench.against_columns(str(other))
    assert columns == order and columns != list(landmarks.SELECTED_COLUMNS)
    assert np.all(np.sort(columns) == np.sort(landmarks.SELECTED_COLUMNS))


def test_curves_reads_finished_runs_and_writes_one_row_each(tmp_path, capsys):
    runs = []
    for name, batch, scores in (("slow", 32, [None, 0.2, None, 0.6]), ("fast", 16,
                                                                      [None, 0.7, None, 0.9])):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "history.csv").write_text("epoch,loss,lr,seconds,score\n" + "".join(
            f"{e + 1},1.0,0.001,30.0,{'' if s is None else s}\n" for e, s in enumerate(scores)))
        (folder / "config.yaml").write_text(
            f"data:\n  batch_size: {batch}\ntrain:\n  learning_rate: 0.006\n")
        runs.append(str(folder))
    out = tmp_path / "curves.png"
    rows = bench.bench_curves(type("Args", (), {"runs": runs, "labels": ["before"],
                                                "out": str(out)}))
    assert [r["run"] for r in rows] == ["before", "fast"]  # a label each, else the folder
    assert rows[0]["score by epoch"] == "2: 0.200, 4: 0.600" and rows[1]["final"] == "0.9000"
    assert rows[1]["batch"] == 16 and rows[0]["train min"] == "2.0"
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_interleaved_latencies_take_turns_after_one_untimed_call_each():
    calls = []

    def runner(name, rows):
        def run(**inputs):
            calls.append(name)
            return {tflite.OUTPUT: np.zeros((rows, 59))}
        return run

    runners = {"a": runner("a", 3), "b": runner("b", 5)}
    clip = np.zeros((4, 390), "float32")
    times, rows = tflite.interleaved_latencies_ms(runners, {"a": clip, "b": clip}, 3)
    assert calls == ["a", "b"] * 4  # the untimed round, then 3 timed rounds in turn
    assert rows == {"a": 3, "b": 5}
    assert {k: v.shape for k, v in times.items()} == {"a": (3,), "b": (3,)}
    assert all((v >= 0).all() for v in times.values())


def test_decoding_table_scores_every_seed_alone_and_the_first_n_together(
        checkpoints, synthetic_records, capsys):
    """Two rigged members on held-out records: one row per grid cell, 1 member = each seed
    alone (mean +- std and per seed), hours from the 1-thread latency; too few checkpoints
    for the grid are refused."""
    cfg_path, paths = checkpoints
    args = ["decoding", "--config", cfg_path, "--checkpoints", *paths, "--records",
            str(synthetic_records), "--clips", "12", "--timed-clips", "3", "--threads", "1",
            "2", "--grid", "1:fp32:ctc", "2:int8:joint"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    rows = [r for r in out.splitlines() if r.startswith("|") and ("ctc, greedy" in r
                                                                 or "joint (" in r)]
    alone, together = rows[-2:]
    cells = [c.strip() for c in alone.split("|")[1:-1]]
    assert cells[:3] == ["ctc, greedy", "1", "fp32"]
    mean, std = (float(v) for v in cells[4].split(" +- "))
    seeds = [float(v) for v in cells[5].split()]
    assert len(seeds) == 2 and mean == pytest.approx(np.mean(seeds), abs=1e-4)
    assert std == pytest.approx(np.std(seeds), abs=1e-4)
    cells = [c.strip() for c in together.split("|")[1:-1]]
    assert cells[:3] == ["joint (ctc weight 0.3), greedy", "2", "int8"] and cells[5] == ""
    # normalized total Levenshtein goes below 0 when the texts are longer than the phrases
    assert float(cells[4]) <= 1.0 and float(cells[-1]) > 0
    with pytest.raises(SystemExit, match="at least 3 checkpoints"):
        bench.main([*args[:-2], "3:fp16:attention"])
