"""The export's TFLite-vs-Keras check on the user's clips, what a failed export leaves behind,
and paths through `tf.io.gfile`.

The models are the tiny rigged ensemble (`conftest.py`); the clips come from the
`synthetic_records` conversion (fold 0 holds 17 competition-train clips). The rigged models
decode most of those clips to clip-dependent strings, so the check has something to judge,
while their score against the true phrases is poor: the check compares TFLite with Keras, not
the model with the truth.
"""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf

import export_tflite
from asl_keras import config, evaluate, landmarks, vocab
from asl_keras.data import pipeline, records
from asl_keras.export import submission, tflite
from asl_keras.training.metrics import normalized_total

CLIPS = 16


def finished_files(folder) -> list[str]:
    """The export's files under their final names in `folder`."""
    return sorted({submission.MODEL_FILE, submission.ARGS_FILE, submission.ZIP_FILE}
                  & set(os.listdir(folder)))


def test_record_clips_are_the_held_out_competition_clips_as_stored(synthetic_records):
    index = pipeline.read_index(str(synthetic_records))
    clips = tflite.record_clips(str(synthetic_records), fold=0, count=CLIPS)
    rows = index[(index["fold"] == 0) & (index["is_supplemental"] == 0)].head(CLIPS)
    assert clips.phrases == rows["phrase"].tolist()
    assert rows["shard"].nunique() > 1  # the clips are gathered from several shards
    stored = {r["sequence_id"]: r["frames"] for shard in records.list_shards(
        str(synthetic_records)) for r in records.read_shard(shard)}
    for sequence_id, frames in zip(rows["sequence_id"], clips.frames, strict=True):
        np.testing.assert_array_equal(frames, stored[sequence_id])
        assert frames.shape[1] == len(landmarks.SELECTED_COLUMNS)
    assert "held-out fold 0" in clips.source
    every_fold = tflite.record_clips(str(synthetic_records), fold=-1, count=1000)
    assert len(every_fold.frames) == int((index["is_supplemental"] == 0).sum())
    with pytest.raises(tflite.ExportError, match="no competition-train clips.*--check-clips 0"):
        tflite.record_clips(str(synthetic_records), fold=7, count=CLIPS)


def test_clips_come_from_given_records_then_the_configs_then_samples(synthetic_records,
                                                                        tmp_path):
    records_dir = str(synthetic_records)
    here = config.Data(records=records_dir)
    nowhere = config.Data(records=str(tmp_path / "missing"))
    assert tflite.choose_clips(here, None, 4).source.startswith(records_dir)
    assert tflite.choose_clips(nowhere, records_dir, 4).source.startswith(records_dir)
    samples = tflite.choose_clips(nowhere, None, 4)
    assert samples.source == "sample" and samples.phrases is None
    assert all(np.array_equal(a, b, equal_nan=True)
               for a, b in zip(samples.frames, landmarks.sample_clips(4), strict=True))
    assert tflite.choose_clips(here, None, 0) is None
    with pytest.raises(tflite.ExportError, match="has no index.csv"):
        tflite.choose_clips(here, str(tmp_path), 4)


def test_export_checks_on_the_records_and_says_so(checkpoints, synthetic_records,
                                                   tmp_path, capsys):
    cfg_path, paths = checkpoints
    out = tmp_path / "out"
    assert export_tflite.main(["--config", cfg_path, "--checkpoints", *paths, "--out", str(out),
                               "--no-fp16", "--records", str(synthetic_records),
                               "--check-clips", str(CLIPS)]) == 0
    printed = capsys.readouterr().out
    for field in (f"check on {CLIPS} clips of {synthetic_records} (held-out fold 0)",
                  "score keras", "tflite", "difference +0.0000 (bound 1e-06)",
                  "of clips decoded to other than the dummy phrase"):
        assert field in printed, (field, printed)
    assert finished_files(out) == [submission.ARGS_FILE, submission.MODEL_FILE]


def test_check_scores_both_against_the_true_phrases(checkpoints, synthetic_records):
    cfg_path, paths = checkpoints
    cfg = config.load(cfg_path)
    models = tflite.load_models(cfg, paths)
    clips = tflite.record_clips(str(synthetic_records), 0, CLIPS)
    model = tflite.convert(models, cfg.data.max_len, weights="fp32")
    check = tflite.check_parity(model, models, cfg.data.max_len, clips, weights="fp32")
    predictions = tflite.keras_texts(models, cfg.data.max_len, clips.frames)
    assert check.clips == CLIPS
    assert check.keras_score == pytest.approx(normalized_total(clips.phrases, predictions))
    assert check.tflite_score == check.keras_score and check.agreement == 1.0
    assert check.decoded == np.mean([p != vocab.DUMMY_PHRASE for p in predictions])
    assert check.decoded >= tflite.MIN_DECODED


def test_fp16_passes_on_the_records(checkpoints, fp16, synthetic_records):
    """The rigged ensemble's fp16 file, whose strings differ from Keras' on some clips (its
    near-tie tokens flip), stays within the fp16 bound on the score."""
    cfg_path, paths = checkpoints
    cfg = config.load(cfg_path)
    with open(os.path.join(fp16, submission.MODEL_FILE), "rb") as f:
        model = f.read()
    clips = tflite.record_clips(str(synthetic_records), 0, CLIPS)
    check = tflite.check_parity(model, tflite.load_models(cfg, paths), cfg.data.max_len, clips,
                                weights="fp16")
    assert abs(check.difference) <= tflite.SCORE_BOUND["fp16"] and check.limit == 0.005


def test_a_broken_conversion_fails_and_leaves_no_finished_file(checkpoints,
                                                               synthetic_records, tmp_path,
                                                               monkeypatch):
    """The TFLite model is converted from the same checkpoints with the decoder's letter columns
    rotated, as a conversion that mixed up weights would."""
    cfg_path, paths = checkpoints
    convert = tflite.convert

    def broken(models, max_len, weights="fp16", decoding=None):
        wrong = tflite.load_models(config.load(cfg_path), paths)
        for model in wrong:
            head = model.decoder.lm_head.kernel.numpy()
            head[:, :vocab.NUM_CHARS] = np.roll(head[:, :vocab.NUM_CHARS], 1, axis=1)
            model.decoder.lm_head.kernel.assign(head)
        return convert(wrong, max_len, weights)

    monkeypatch.setattr(tflite, "convert", broken)
    out = tmp_path / "out"
    with pytest.raises(tflite.ExportError, match=r"against the true phrases: the difference "
                                                 r".* exceeds 1e-06 \(fp32 weights\)") as err:
        tflite.export(cfg_path, paths, str(out), weights="fp32", make_submission=True,
                      check_clips=CLIPS, records_dir=str(synthetic_records))
    assert submission.FAILED_MODEL_FILE in str(err.value)
    assert finished_files(out) == []
    assert os.listdir(out) == [submission.FAILED_MODEL_FILE]


def test_a_too_weak_model_is_not_judged_and_the_message_says_how_to_skip(checkpoints,
                                                                         synthetic_records,
                                                                         tmp_path):
    """A confidence head that is never sure: every clip gets the dummy phrase."""
    cfg_path, paths = checkpoints
    weak = tflite.load_models(config.load(cfg_path), paths)
    weak_paths = []
    for i, model in enumerate(weak):
        model.confidence_head.bias.assign(model.confidence_head.bias - 100.0)
        weak_paths.append(str(tmp_path / f"weak_{i}.weights.h5"))
        model.save_weights(weak_paths[-1])
    out = tmp_path / "out"
    with pytest.raises(tflite.ExportError, match=r"only 0% of the 16 clips .* too weak to judge"
                                                 r".*--check-clips 0"):
        tflite.export(cfg_path, weak_paths, str(out), weights="fp32", check_clips=CLIPS,
                      records_dir=str(synthetic_records))
    assert finished_files(out) == []
    result = tflite.export(cfg_path, weak_paths, str(out), weights="fp32", check_clips=0,
                           records_dir=str(synthetic_records))
    assert result.check is None and "not run (--check-clips 0)" in result.summary()
    assert sorted(os.listdir(out)) == [submission.ARGS_FILE, submission.MODEL_FILE]  # no FAILED


def test_export_reads_and_writes_only_through_gfile(checkpoints, tmp_path, monkeypatch):
    """Checkpoints under ram://, output to ram://: the working directory stays empty."""
    cfg_path, paths = checkpoints
    root = f"ram://{tmp_path.name}"
    tf.io.gfile.makedirs(f"{root}/runs")
    remote = []
    for path in paths:
        remote.append(f"{root}/runs/{os.path.basename(path)}")
        tf.io.gfile.copy(path, remote[-1])
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out = f"{root}/export"
    result = tflite.export(cfg_path, remote, out, weights="fp32", make_submission=True,
                           check_clips=8)
    assert os.listdir(work) == []
    assert sorted(tf.io.gfile.listdir(out)) == [submission.ARGS_FILE, submission.MODEL_FILE,
                                                submission.ZIP_FILE]
    assert result.model_path == f"{out}/{submission.MODEL_FILE}"
    with tf.io.gfile.GFile(result.model_path, "rb") as f:
        model = f.read()
    with tf.io.gfile.GFile(result.submission_path, "rb") as f:
        with zipfile.ZipFile(io.BytesIO(f.read())) as z:
            assert z.read(submission.MODEL_FILE) == model
    assert submission.selected_columns(result.model_path) == list(landmarks.SELECTED_COLUMNS)
    clips = landmarks.sample_clips(3, seed=5)
    scores = evaluate.score_tflite(result.model_path, [evaluate.Sample("abc", c) for c in clips])
    run = tflite.runner(model)
    assert scores.predictions == [tflite.tflite_text(run, c) for c in clips]
    assert os.listdir(work) == []
