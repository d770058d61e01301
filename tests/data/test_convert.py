"""Kaggle folder -> TFRecords: round trip, resume, verify, and every bad-input case."""

from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from asl_keras import vocab
from asl_keras.data import convert, kaggle, records
from asl_keras.landmarks import SELECTED_COLUMNS
from tests.conftest import random_frames, write_parquet
from tests.paths import checkout_env


def read_all(out_dir) -> dict[int, dict]:
    return {r["sequence_id"]: r for shard in records.list_shards(str(out_dir))
            for r in records.read_shard(shard)}


def pandas_frames(path: str) -> dict[int, np.ndarray]:
    """What pandas reads from a Kaggle parquet, per sequence, in SELECTED_COLUMNS order."""
    df = pd.read_parquet(path)
    return {int(sid): g.sort_values("frame")[list(SELECTED_COLUMNS)].to_numpy(np.float32)
            for sid, g in df.groupby(level="sequence_id")}


def assert_bit_identical(a: np.ndarray, b: np.ndarray):
    assert a.shape == b.shape
    assert a.view(np.uint32).tobytes() == b.view(np.uint32).tobytes()


def test_round_trip_is_bit_identical_with_folds_by_participant(tiny_kaggle, tmp_path):
    data, _ = tiny_kaggle
    out = tmp_path / "rec"
    m = convert.convert(str(data), str(out), workers=1, progress=False)
    got = read_all(out)
    expected = {**pandas_frames(str(data / "train_landmarks/11.parquet")),
                **pandas_frames(str(data / "supplemental_landmarks/22.parquet"))}
    assert m["totals"]["written"] == len(got) == len(expected) == 8
    assert np.isnan(next(iter(got.values()))["frames"]).any()  # NaNs survive
    for sid, rec in got.items():
        assert_bit_identical(rec["frames"], expected[sid])
        assert rec["n_frames"] == len(expected[sid])
        np.testing.assert_array_equal(rec["token_ids"], vocab.encode(rec["phrase"]))
    meta = kaggle.read_metadata(str(data))
    train = meta[~meta.is_supplemental]
    fold_of = {sid: r["fold"] for sid, r in got.items()}
    per_participant = train.groupby("participant_id")["sequence_id"].apply(
        lambda s: {fold_of[i] for i in s})
    assert all(len(f) == 1 for f in per_participant)  # a signer lives in one fold
    assert got[2000]["is_supplemental"] == 1 and got[2000]["fold"] == fold_of[1000]
    assert got[2001]["fold"] == -1  # supplemental signer without train rows
    assert convert.verify(str(data), str(out))["records"] == 8


def test_parallel_conversion_equals_serial(tiny_kaggle, tmp_path):
    data, _ = tiny_kaggle
    convert.convert(str(data), str(tmp_path / "a"), workers=1, progress=False)
    convert.convert(str(data), str(tmp_path / "b"), workers=2, progress=False)
    for name in os.listdir(tmp_path / "a"):
        if name.endswith(records.SHARD_SUFFIX):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_resume_rewrites_incomplete_shards_only(tiny_kaggle, tmp_path):
    data, _ = tiny_kaggle
    ref, out = tmp_path / "ref", tmp_path / "out"
    convert.convert(str(data), str(ref), workers=1, progress=False)
    convert.convert(str(data), str(out), workers=1, progress=False)
    # Simulate a run killed mid-way: one shard renamed but its sidecar not yet written,
    # a half-written temporary file, and no manifest.
    os.remove(out / "train-11.tfrecord.json")
    (out / "train-11.tfrecord").write_bytes(b"partial")
    (out / "supplemental-22.tfrecord.tmp-999").write_bytes(b"junk")
    os.remove(out / convert.MANIFEST)
    convert.convert(str(data), str(out), workers=1, progress=False)
    assert sorted(os.listdir(out)) == sorted(os.listdir(ref))
    for name in os.listdir(ref):
        if name.endswith(records.SHARD_SUFFIX):
            assert (out / name).read_bytes() == (ref / name).read_bytes()


def test_verify_detects_a_lost_record(tiny_kaggle, tmp_path):
    data, _ = tiny_kaggle
    out = tmp_path / "rec"
    convert.convert(str(data), str(out), workers=1, progress=False)
    shard = out / "supplemental-22.tfrecord"
    import tensorflow as tf
    first = next(iter(tf.data.TFRecordDataset(str(shard)))).numpy()
    with tf.io.TFRecordWriter(str(shard)) as w:
        w.write(first)
    with pytest.raises(convert.ConversionError, match="1 records, manifest says 2"):
        convert.verify(str(data), str(out))


# ---------------------------------------------------------------- bad input


def _csv(data, name="train.csv"):
    return pd.read_csv(data / name, dtype={"phrase": str}, keep_default_na=False)


def test_missing_landmark_columns_name_the_file(tiny_kaggle, tmp_path):
    data, frames = tiny_kaggle
    cols = [c for c in pd.read_parquet(data / "train_landmarks/11.parquet").columns if c != "frame"]
    keep = [c for c in cols if c != "y_right_hand_3"]
    write_parquet(str(data / "train_landmarks/11.parquet"),
                  {s: frames[s][:, [cols.index(c) for c in keep]] for s in range(1000, 1006)},
                  columns=keep)
    with pytest.raises(kaggle.KaggleFormatError, match=r"11\.parquet.*y_right_hand_3"):
        convert.convert(str(data), str(tmp_path / "o"), workers=1, progress=False)


def test_row_absent_from_parquet_is_a_counted_skip(tiny_kaggle, tmp_path):
    data, _ = tiny_kaggle
    df = _csv(data)
    df.loc[len(df)] = ["train_landmarks/11.parquet", 11, 1999, 100, "ghost row"]
    df.to_csv(data / "train.csv", index=False)
    m = convert.convert(str(data), str(tmp_path / "o"), workers=1, progress=False)
    assert m["totals"] == {**m["totals"], "metadata_rows": 9, "written": 8, "skipped": 1}
    (skip,) = m["skipped"]
    assert skip["sequence_id"] == 1999 and skip["row"] == 8 and skip["source"] == "train.csv"
    assert "0 frames" in skip["reason"] and "11.parquet" in skip["reason"]


def test_unlisted_parquet_sequences_are_reported(tiny_kaggle, tmp_path):
    data, _ = tiny_kaggle
    df = _csv(data)
    df[df.sequence_id != 1003].to_csv(data / "train.csv", index=False)
    m = convert.convert(str(data), str(tmp_path / "o"), workers=1, progress=False)
    assert m["unlisted_sequences"] == {"train_landmarks/11.parquet": [1003]}


@pytest.mark.parametrize("content", [b"not a parquet file at all", "truncate"])
def test_truncated_or_non_parquet_file_names_the_file(tiny_kaggle, tmp_path, content):
    data, _ = tiny_kaggle
    path = data / "train_landmarks/11.parquet"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if content == "truncate" else content)
    with pytest.raises(kaggle.KaggleFormatError, match=r"11\.parquet: (not a readable|truncated)"):
        convert.convert(str(data), str(tmp_path / "o"), workers=1, progress=False)


def test_missing_landmark_file_names_it(tiny_kaggle, tmp_path):
    data, _ = tiny_kaggle
    os.remove(data / "supplemental_landmarks/22.parquet")
    with pytest.raises(kaggle.KaggleFormatError, match=r"22\.parquet: landmark file not found"):
        convert.convert(str(data), str(tmp_path / "o"), workers=1, progress=False)


def test_duplicate_sequence_id_names_both_rows(tiny_kaggle, tmp_path):
    data, _ = tiny_kaggle
    df = _csv(data, "supplemental_metadata.csv")
    df.loc[1, "sequence_id"] = 1002
    df.to_csv(data / "supplemental_metadata.csv", index=False)
    with pytest.raises(kaggle.KaggleFormatError,
                       match=r"duplicate sequence_id 1002 in train.csv row 4 and "
                             r"supplemental_metadata.csv row 3"):
        convert.convert(str(data), str(tmp_path / "o"), workers=1, progress=False)


@pytest.mark.parametrize("phrase,reason", [
    ("Hello World", r"outside the map: \['H', 'W'\]"),
    ("a" * 32, r"longer than 31 characters \(32\)"),
    ("", "empty phrase"),
])
def test_bad_phrases_are_counted_skips(tiny_kaggle, tmp_path, phrase, reason):
    data, _ = tiny_kaggle
    df = _csv(data)
    df.loc[2, "phrase"] = phrase
    df.to_csv(data / "train.csv", index=False)
    out = tmp_path / "o"
    m = convert.convert(str(data), str(out), workers=1, progress=False)
    (skip,) = m["skipped"]
    assert skip["sequence_id"] == 1002 and skip["row"] == 4
    assert re.search(reason, skip["reason"])
    assert 1002 not in read_all(out) and m["totals"]["written"] == 7
    convert.verify(str(data), str(out))


def test_non_numeric_landmark_column_is_named(tiny_kaggle, tmp_path):
    data, _ = tiny_kaggle
    path = data / "train_landmarks/11.parquet"
    df = pd.read_parquet(path)
    df["x_face_61"] = df["x_face_61"].astype(str)
    df.to_parquet(path)
    with pytest.raises(kaggle.KaggleFormatError, match=r"11\.parquet: column 'x_face_61'.*number"):
        convert.convert(str(data), str(tmp_path / "o"), workers=1, progress=False)


def test_non_integer_metadata_value_names_row_and_column(tiny_kaggle, tmp_path):
    data, _ = tiny_kaggle
    df = _csv(data)
    df["participant_id"] = df["participant_id"].astype(object)
    df.loc[3, "participant_id"] = "abc"
    df.to_csv(data / "train.csv", index=False)
    with pytest.raises(kaggle.KaggleFormatError,
                       match=r"train.csv: row 5, column 'participant_id': expected an integer"):
        convert.convert(str(data), str(tmp_path / "o"), workers=1, progress=False)


def test_output_folder_with_a_different_conversion_is_refused(tiny_kaggle, tmp_path):
    data, _ = tiny_kaggle
    out = tmp_path / "o"
    convert.convert(str(data), str(out), workers=1, progress=False)
    convert.convert(str(data), str(out), workers=1, progress=False)  # same inputs: fine
    other = tmp_path / "other"
    shutil.copytree(data, other)
    df = _csv(other)
    df.loc[0, "phrase"] = "changed phrase"
    df.to_csv(other / "train.csv", index=False)
    with pytest.raises(convert.ConversionError, match="already holds a different conversion"):
        convert.convert(str(other), str(out), workers=1, progress=False)
    assert convert.main(["--data-dir", str(other), "--out", str(out), "--quiet"]) == 2
    assert json.loads((out / convert.MANIFEST).read_text())["totals"]["written"] == 8


def test_zero_frame_sequence_cannot_hide(tiny_kaggle, tmp_path):
    """A sequence whose every row was removed from the parquet has 0 frames: skipped, counted."""
    data, frames = tiny_kaggle
    rng = np.random.default_rng(3)
    write_parquet(str(data / "supplemental_landmarks/22.parquet"),
                  {2000: random_frames(rng, 3)})  # 2001 now has no rows
    m = convert.convert(str(data), str(tmp_path / "o"), workers=1, progress=False)
    assert [s["sequence_id"] for s in m["skipped"]] == [2001]
    assert m["totals"]["written"] + m["totals"]["skipped"] == m["totals"]["metadata_rows"]


# The converter's command line, held in the middle of its second shard (one shard complete,
# one sequence of the next written to its temporary file) until it is killed: the kill lands at
# the same point however loaded the machine is.
HELD_CONVERTER = """
import sys, threading
from asl_keras.data import convert, kaggle

read, calls = kaggle.iter_file, []

def iter_file(*args):
    calls.append(args)
    for i, seq in enumerate(read(*args)):
        yield seq
        if len(calls) == 2 and i == 0:
            print("HELD", flush=True)
            threading.Event().wait()

kaggle.iter_file = iter_file
sys.exit(convert.main(sys.argv[1:]))
"""


def test_killed_converter_resumes_to_identical_records(tmp_path):
    """SIGKILL a real converter process in its second shard, rerun: same bytes, no loss."""
    import select
    import subprocess
    import sys

    from asl_keras.data import synthetic

    data = tmp_path / "kaggle"
    synthetic.generate(data, 64, 0, sequences_per_file=8, n_participants=4, seed=1)
    ref, out = tmp_path / "ref", tmp_path / "out"
    convert.convert(str(data), str(ref), workers=1, progress=False)
    proc = subprocess.Popen([sys.executable, "-c", HELD_CONVERTER, "--data-dir", str(data),
                             "--out", str(out), "--workers", "1", "--quiet"], cwd=tmp_path,
                            env=checkout_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 300)
        line = proc.stdout.readline() if ready else "(nothing in 300 s)"
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert line == "HELD\n", (line, err[-3000:])
    assert len(list(out.glob("*.tfrecord.json"))) == 1 and len(list(out.glob("*.tmp-*"))) == 1
    assert not (out / convert.MANIFEST).exists()
    convert.convert(str(data), str(out), workers=1, progress=False)
    assert sorted(os.listdir(out)) == sorted(os.listdir(ref))
    for name in os.listdir(ref):
        if name.endswith((records.SHARD_SUFFIX, ".csv")):
            assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert convert.verify(str(data), str(out))["records"] == 64


def test_generation_and_conversion_in_ram_leave_the_working_folder_alone(tmp_path, monkeypatch):
    """Every file goes through tf.io.gfile: a `ram://` Kaggle folder converts into `ram://`
    records that read back whole, and nothing is written relative to the working folder.
    `workers=2` is asked for: ram:// is per-process memory, so the conversion must stay
    in-process."""
    import tensorflow as tf

    from asl_keras.data import pipeline, synthetic

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    root = f"ram://{tmp_path.name}"
    data, out = f"{root}/kaggle", f"{root}/records"
    try:
        summary = synthetic.generate(data, 8, 4, sequences_per_file=3, n_participants=4, seed=2)
        m = convert.convert(data, out, workers=2, progress=False)
        meta = kaggle.read_metadata(data)
        index = pipeline.read_index(out)
        got = read_all(out)
        checked = convert.verify(data, out)
    finally:
        if tf.io.gfile.exists(root):
            tf.io.gfile.rmtree(root)
    assert list(cwd.iterdir()) == []
    files = summary["train"]["files"] + summary["supplemental"]["files"]
    assert len(meta) == 12 and len(m["shards"]) == len(files) == 5
    t = m["totals"]
    assert t["metadata_rows"] == len(meta) == t["written"] + t["skipped"]
    assert len(index) == len(got) == t["written"] == checked["records"] > 0
    assert set(index["sequence_id"]) == set(got)
    assert m["data_dir"] == data  # a URL is kept as given, not made a local absolute path
    for sh in m["shards"]:
        assert (index["shard"] == sh["file"]).sum() == sh["sequences"]
