"""Synthetic Kaggle-format generator: schema, consistency, determinism and learnable signal,
for every difficulty preset; the default preset's output pinned."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from asl_keras import config, landmarks, resources, vocab
from asl_keras.data import synthetic
from tests.paths import checkout_env, config_path

ARGS = dict(n_train=10, n_supplemental=7, sequences_per_file=4, n_participants=5, seed=3)
SPLITS = (("train.csv", "train_landmarks"), ("supplemental_metadata.csv", "supplemental_landmarks"))
COLUMNS = landmarks.raw_columns()
N_RAW = landmarks.NUM_RAW_LANDMARKS


# Share of frames without the signing hand, per preset (the hard one adds long occlusions).
MISSING_SHARE = {"default": (0.01, 0.12), "hard": (0.05, 0.35)}


@pytest.fixture(scope="module", params=list(synthetic.DIFFICULTIES))
def difficulty(request) -> str:
    """Each preset: the folder tests run once on a small folder of each."""
    return request.param


@pytest.fixture(scope="module")
def folder(tmp_path_factory, difficulty):
    out = tmp_path_factory.mktemp(f"synthetic_{difficulty}") / "kaggle"
    summary = synthetic.generate(out, **ARGS, difficulty=difficulty)
    return out, summary


def read_folder(out) -> tuple[pd.DataFrame, dict[int, pd.DataFrame]]:
    """Both CSVs (with a `csv` column) and every sequence's rows, keyed by sequence id."""
    metas, sequences = [], {}
    for csv_name, _ in SPLITS:
        meta = pd.read_csv(out / csv_name, dtype={"phrase": str}, keep_default_na=False)
        metas.append(meta.assign(csv=csv_name))
        for path in meta["path"].unique():
            for sid, rows in pd.read_parquet(out / path).groupby(level="sequence_id", sort=False):
                sequences[int(sid)] = rows
    return pd.concat(metas, ignore_index=True), sequences


@pytest.fixture(scope="module")
def loaded(folder):
    """The fixture folder read once: metadata and every sequence's rows."""
    return read_folder(folder[0])


def points(rows: pd.DataFrame) -> np.ndarray:
    """Native-order rows -> `[T, 543, 3]`."""
    values = rows[COLUMNS].to_numpy()
    return values.reshape(len(values), 3, N_RAW).transpose(0, 2, 1)


def part_slice(name: str) -> slice:
    start = 0
    for part, n in landmarks.PARTS:
        if part == name:
            return slice(start, start + n)
        start += n
    raise KeyError(name)


# --- layout and schema ------------------------------------------------------------------------


def test_folder_has_the_kaggle_files(folder):
    out, summary = folder
    assert (out / "character_to_prediction_index.json").read_bytes() == resources.path(
        "character_to_prediction_index.json").read_bytes()
    for (csv_name, sub), key in zip(SPLITS, ("train", "supplemental"), strict=True):
        meta = pd.read_csv(out / csv_name)
        assert list(meta.columns) == ["path", "file_id", "sequence_id", "participant_id", "phrase"]
        n = ARGS["n_train"] if key == "train" else ARGS["n_supplemental"]
        assert len(meta) == summary[key]["sequences"] == n
        n_files = math.ceil(n / ARGS["sequences_per_file"])
        assert sorted(p.name for p in (out / sub).iterdir()) == sorted(
            f"{i}.parquet" for i in meta["file_id"].unique())
        assert len(summary[key]["files"]) == meta["file_id"].nunique() == n_files
        assert (meta["path"] == sub + "/" + meta["file_id"].astype(str) + ".parquet").all()
        assert meta.groupby("file_id").size().max() == ARGS["sequences_per_file"]


def test_parquet_schema_is_kaggle(folder):
    out, summary = folder
    for path in summary["train"]["files"] + summary["supplemental"]["files"]:
        schema = pq.read_schema(out / path)
        assert schema.pandas_metadata["index_columns"] == ["sequence_id"]
        assert schema.names == ["frame", *COLUMNS, "sequence_id"]
        assert schema.field("sequence_id").type == pa.int64()
        assert schema.field("frame").type == pa.int16()
        assert {schema.field(c).type for c in COLUMNS} == {pa.float32()}
        df = pd.read_parquet(out / path)
        assert df.index.name == "sequence_id" and df.index.dtype == np.int64
        assert list(df.columns) == ["frame", *COLUMNS]


def test_metadata_ids(folder, loaded):
    _, summary = folder
    meta, _ = loaded
    assert meta["sequence_id"].is_unique  # across both CSVs
    assert (meta["sequence_id"] >= 10**9).all() and (meta["sequence_id"] < 2**31).all()
    assert meta["participant_id"].between(0, 254).all()
    assert set(meta["participant_id"]) <= set(summary["participants"])
    assert len(summary["participants"]) == ARGS["n_participants"]
    train_files = set(meta.loc[meta.csv == "train.csv", "file_id"])
    assert not train_files & set(meta.loc[meta.csv != "train.csv", "file_id"])


def test_csv_rows_and_parquet_sequences_match(folder):
    out, _ = folder
    meta = pd.concat([pd.read_csv(out / c) for c, _ in SPLITS], ignore_index=True)
    for path, rows in meta.groupby("path"):
        df = pd.read_parquet(out / path)
        ids = df.index.to_numpy()
        assert set(ids) == set(rows["sequence_id"])
        # rows of a sequence are contiguous: the id changes exactly once per new sequence
        assert np.count_nonzero(ids[1:] != ids[:-1]) == len(rows) - 1
        for _, seq in df.groupby(level="sequence_id"):
            np.testing.assert_array_equal(seq["frame"].to_numpy(), np.arange(len(seq)))


def test_sequence_lengths_are_real_like(folder, loaded):
    _, summary = folder
    meta, sequences = loaded
    for row in meta.itertuples():
        n = len(sequences[row.sequence_id])
        # at least 2 held frames plus 1 transition per character, plus the two pauses
        assert 3 * len(row.phrase) + 6 <= n <= 12 * len(row.phrase) + 20
    total = summary["train"]["frames"] + summary["supplemental"]["frames"]
    assert total == sum(len(s) for s in sequences.values())


# --- values ---------------------------------------------------------------------------------


def test_nan_covers_whole_parts(loaded, difficulty):
    meta, sequences = loaded
    missing = frames = 0
    for row in meta.itertuples():
        nan = np.isnan(points(sequences[row.sequence_id]))  # [T, 543, 3]
        for part, _ in landmarks.PARTS:
            block = nan[:, part_slice(part)].reshape(len(nan), -1)
            assert (block.all(axis=1) | ~block.any(axis=1)).all(), part
        assert not nan[:, part_slice("pose")].any()
        left = synthetic.participant_profile(row.participant_id).left_handed
        signing, other = ("left_hand", "right_hand") if left else ("right_hand", "left_hand")
        gone = nan[:, part_slice(signing)].all((1, 2)).sum()
        assert gone < nan[:, part_slice(other)].all((1, 2)).sum()  # the signing hand is seen most
        missing += gone
        frames += len(nan)
    # the signing hand drops out in bursts: in some frames, but few
    low, high = MISSING_SHARE[difficulty]
    assert low * frames < missing < high * frames


def test_coordinates_are_image_like(loaded):
    _, sequences = loaded
    p = np.concatenate([points(rows) for rows in sequences.values()])
    for part in ("face", "left_hand", "right_hand"):
        xy = p[:, part_slice(part), :2]
        assert np.nanmin(xy) > -0.05 and np.nanmax(xy) < 1.05, part
    for part in ("left_hand", "right_hand"):
        z = p[:, part_slice(part), 2]
        assert np.nanmax(np.abs(z)) < 0.3, part
    upper_body = p[:, part_slice("pose")][:, :23]  # head, arms and hands stay in the picture
    assert np.nanmin(upper_body[..., :2]) > 0 and np.nanmax(upper_body[..., :2]) < 1
    pose_z = p[:, part_slice("pose"), 2]
    assert -1.2 < pose_z.min() and pose_z.max() < 0.2


def test_signing_arm_follows_the_hand():
    person = next(synthetic.participant_profile(i) for i in range(255)
                  if not synthetic.participant_profile(i).left_handed)
    frames, _ = synthetic.render_sequence("arm test", person.participant_id,
                                          np.random.default_rng(0))
    p = frames.reshape(len(frames), 3, N_RAW).transpose(0, 2, 1)
    hand_wrist = p[:, part_slice("right_hand").start]
    pose_wrist = p[:, part_slice("pose").start + 16]
    seen = ~np.isnan(hand_wrist[:, 0])
    assert np.abs(hand_wrist[seen, :2] - pose_wrist[seen, :2]).max() < 0.03
    assert np.ptp(pose_wrist[:, 0]) > 0.01  # it moves with the hand


# --- phrases --------------------------------------------------------------------------------


def test_folder_phrases_are_encodable(folder, loaded):
    _, summary = folder
    meta, _ = loaded
    for row in meta.itertuples():
        vocab.encode(row.phrase)  # raises on characters outside the map
        if row.csv == "train.csv":
            assert 0 < len(row.phrase) <= vocab.MAX_PHRASE_LEN
        else:
            assert row.phrase in synthetic.SUPPLEMENTAL_SENTENCES
    long_supp = (meta[meta.csv != "train.csv"].phrase.str.len() > vocab.MAX_PHRASE_LEN).sum()
    assert summary["supplemental"]["too_long"] == long_supp
    assert summary["train"]["too_long"] == 0


def test_train_phrases_mix_the_real_styles():
    phrases = [synthetic.train_phrase(np.random.default_rng([7, i])) for i in range(400)]
    for phrase in phrases:
        vocab.encode(phrase)
        assert 0 < len(phrase) <= vocab.MAX_PHRASE_LEN
    styles = {
        "address": r"\d+ [a-z]+( [a-z#0-9]+)*",
        "phone": r"(\+\d{1,3}(-\d{2,5}){2,4}|\(\d{3}\) \d{3}-\d{4}|\d{3}-\d{3}-\d{4})",
        "url": r"\S*[a-z]\.[a-z]\S*",
        "name": r"[a-z]+ [a-z]+",
    }
    counts = {k: sum(re.fullmatch(p, s) is not None for s in phrases) for k, p in styles.items()}
    assert all(c >= 20 for c in counts.values()), counts
    assert len(set(phrases)) > 350  # random, not drawn from a small pool


def test_supplemental_pool_shape():
    pool = synthetic.SUPPLEMENTAL_SENTENCES
    assert 50 <= len(set(pool)) == len(pool) <= 80
    assert all(re.fullmatch(r"[a-z]+( [a-z]+)+", s) for s in pool)
    lengths = np.array([len(s) for s in pool])
    assert 3 <= (lengths > vocab.MAX_PHRASE_LEN).sum() <= 10  # a few deliberately too long
    assert lengths.max() <= 40
    drawn = {synthetic.supplemental_phrase(np.random.default_rng(i)) for i in range(300)}
    assert len(drawn) >= 45  # the whole pool is used


# --- determinism and overwriting ------------------------------------------------------------


def frames_by_sequence(sequences: dict[int, pd.DataFrame]) -> dict[int, np.ndarray]:
    return {sid: rows.to_numpy(np.float32) for sid, rows in sequences.items()}


def same_frames(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def test_same_seed_is_identical_and_other_seed_differs(folder, loaded, tmp_path, difficulty):
    out, _ = folder
    original = frames_by_sequence(loaded[1])
    again = tmp_path / "again"
    synthetic.generate(again, **ARGS, difficulty=difficulty)
    for csv_name, _ in SPLITS:
        assert (again / csv_name).read_bytes() == (out / csv_name).read_bytes()
    assert same_frames(frames_by_sequence(read_folder(again)[1]), original)
    other = tmp_path / "other"
    synthetic.generate(other, **{**ARGS, "seed": 4}, difficulty=difficulty)
    assert (other / "train.csv").read_bytes() != (out / "train.csv").read_bytes()
    first = pd.read_csv(other / "train.csv").iloc[0]
    rows = pd.read_parquet(other / first.path).loc[[first.sequence_id]]
    new = rows.to_numpy(np.float32)
    assert not any(len(f) == len(new) and np.array_equal(f, new, equal_nan=True)
                   for f in original.values())


def test_sequences_do_not_depend_on_file_grouping(folder, loaded, tmp_path, difficulty):
    out, _ = folder
    regrouped = tmp_path / "regrouped"
    synthetic.generate(regrouped, **{**ARGS, "sequences_per_file": 3}, difficulty=difficulty)
    cols = ["sequence_id", "participant_id", "phrase"]
    for csv_name, _ in SPLITS:
        a, b = pd.read_csv(out / csv_name), pd.read_csv(regrouped / csv_name)
        pd.testing.assert_frame_equal(a[cols], b[cols])
        assert a["file_id"].nunique() != b["file_id"].nunique()
    assert same_frames(frames_by_sequence(read_folder(regrouped)[1]),
                       frames_by_sequence(loaded[1]))


def test_overwrite_rules(tmp_path):
    out = tmp_path / "data"
    small = dict(n_train=2, n_supplemental=1, sequences_per_file=2, n_participants=2)
    synthetic.generate(out, **small, seed=1)
    synthetic.generate(out, **small, seed=1)  # same arguments: regenerating is fine
    with pytest.raises(FileExistsError, match="--force"):
        synthetic.generate(out, **small, seed=2)
    assert json.loads((out / "synthetic_manifest.json").read_text())["seed"] == 1
    (out / "notes.txt").write_text("keep me")
    synthetic.generate(out, **small, seed=2, force=True)
    assert json.loads((out / "synthetic_manifest.json").read_text())["seed"] == 2
    assert (out / "notes.txt").read_text() == "keep me"  # force removes only our own files
    assert len(list((out / "train_landmarks").iterdir())) == 1  # no stale files from seed 1

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "train.csv").write_text("path,file_id,sequence_id,participant_id,phrase\n")
    with pytest.raises(FileExistsError):
        synthetic.generate(foreign, **small)


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError):
        synthetic.generate(tmp_path / "a", 2, 0, sequences_per_file=0)
    with pytest.raises(ValueError):
        synthetic.generate(tmp_path / "b", 2, 0, n_participants=256)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--sequences", "3", "--supplemental", "2", "--per-file", "2",
            "--participants", "2", "--seed", "5"]
    assert synthetic.main(argv) == 0
    assert "train: 3 sequences in 2 files" in capsys.readouterr().out
    assert len(pd.read_csv(out / "supplemental_metadata.csv")) == 2
    # the command and the function recognise each other's folders
    synthetic.generate(out, 3, 2, sequences_per_file=2, n_participants=2, seed=5)
    changed = argv[:-1] + ["6"]
    assert synthetic.main(changed) == 1
    assert "--force" in capsys.readouterr().err
    assert synthetic.main(changed + ["--force"]) == 0


def test_module_does_not_import_tensorflow():
    code = ("import sys, asl_keras.data.synthetic; "
            "sys.exit('tensorflow' in sys.modules or 'keras' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], env=checkout_env(),
                          check=False).returncode == 0


# --- the signal -----------------------------------------------------------------------------


@pytest.mark.parametrize("preset", list(synthetic.DIFFICULTIES))
def test_frame_labels_follow_the_phrase(preset):
    phrase = "hello  www.aa.com/~x"  # doubled letters and spaces must stay separate holds
    for pid, seed in [(17, 1), *((p, 10 + p) for p in range(0, 240, 12))]:  # slow and fast clips
        frames, labels = synthetic.render_sequence(phrase, pid, np.random.default_rng(seed),
                                                   preset)
        assert len(frames) == len(labels) and labels[0] == labels[-1] == -1
        change = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        chars = labels[change] >= 0
        np.testing.assert_array_equal(labels[change[chars]], vocab.encode(phrase))
        runs = np.diff(np.r_[change, len(labels)])
        assert runs[chars].min() >= 2  # every character is held for at least 2 frames


def dominant_hand(frames: np.ndarray, person: synthetic.Participant) -> np.ndarray:
    """Signing hand `[T, 21, 3]`, wrist-relative, in palm lengths, mirrored to a right hand."""
    p = frames.reshape(len(frames), 3, N_RAW).transpose(0, 2, 1).astype(np.float64)
    hand = p[:, part_slice("left_hand" if person.left_handed else "right_hand")]
    hand = (hand - hand[:, :1]) / person.palm
    if person.left_handed:
        hand[..., 0] *= -1
    return hand


def test_doubled_letter_slides_sideways():
    person = synthetic.participant_profile(40)
    frames, labels = synthetic.render_sequence("ll", 40, np.random.default_rng(2))
    p = frames.reshape(len(frames), 3, N_RAW).transpose(0, 2, 1)
    side = "left_hand" if person.left_handed else "right_hand"
    wrist_x = p[:, part_slice(side).start, 0] / person.palm
    holds = np.flatnonzero(labels >= 0)
    gap = np.flatnonzero(np.diff(holds) > 1)[0]
    first, second = holds[: gap + 1], holds[gap + 1:]
    assert abs(np.nanmean(wrist_x[second]) - np.nanmean(wrist_x[first])) > 0.3


def held_shapes(participants, renditions: int, seed: int):
    """Held frames of all 59 characters: flattened normalised hands and their character ids."""
    xs, ys = [], []
    for pid in participants:
        person = synthetic.participant_profile(pid)
        for k in range(renditions):
            rng = np.random.default_rng([seed, pid, k])
            phrase = "".join(vocab.ID_TO_CHAR[int(i)] for i in rng.permutation(vocab.NUM_CHARS))
            frames, labels = synthetic.render_sequence(phrase, pid, rng)
            hand = dominant_hand(frames, person).reshape(len(frames), -1)
            keep = (labels >= 0) & ~np.isnan(hand).any(axis=1)
            xs.append(hand[keep])
            ys.append(labels[keep])
    return np.concatenate(xs), np.concatenate(ys)


def test_characters_are_distinguishable_across_participants():
    x, y = held_shapes(range(0, 12), 2, seed=0)
    means = np.stack([x[y == c].mean(axis=0) for c in range(vocab.NUM_CHARS)])
    noise = np.sqrt(np.mean((x - means[y]) ** 2))  # per-coordinate spread around the mean
    gaps = np.linalg.norm(means[:, None] - means[None], axis=-1)
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() > 10 * noise, (gaps.min(), noise)
    # Unseen signers: nearest class mean of single frames is almost always right.
    x_new, y_new = held_shapes(range(200, 204), 1, seed=1)
    guess = ((x_new[:, None] - means[None]) ** 2).sum(-1).argmin(axis=1)
    assert (guess == y_new).mean() > 0.9


def test_alphabet_is_fixed_and_separated():
    params = synthetic.character_params()
    assert params.shape == (vocab.NUM_CHARS, synthetic.N_PARAMS)
    shapes = synthetic.hand_pose(params)
    gaps = np.linalg.norm(shapes[:, None] - shapes[None], axis=-1).mean(-1)
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() > 0.3  # mean landmark distance, in palm lengths
    rest = synthetic.hand_pose(synthetic.NEUTRAL)
    assert np.linalg.norm(shapes - rest, axis=-1).mean(-1).min() > 0.3


# --- difficulty presets ---------------------------------------------------------------------

# Computed with the generator from before the difficulty presets existed: (phrase, participant,
# rng seed) -> frames, sum of the labels, NaN count, sum of the finite values and a weighted sum
# (weights 1..7 cycling over the flattened frames, so moved values count too). Participant 0 is
# left-handed and 3 shows the idle other hand.
DEFAULT_CHECKSUMS = [
    ("hello  www.aa.com/~x", 17, 1, 163, 3081, 10332, 67245.81764919983, 268985.6835498044),
    ("271097 bayshore boulevard", 0, 2, 148, 2601, 17667, 56904.49248696659, 227612.73308979213),
    ("+20-4703-88149", 3, 3, 105, 815, 6174, 41838.457947296, 167354.821192248),
    ("the kettle is whistling again", 40, 4, 164, 3758, 10773, 65748.17400544643,
     262987.4919356614),
]


def checksum(frames: np.ndarray, labels: np.ndarray) -> tuple:
    v = frames.astype(np.float64)
    weights = np.arange(v.size, dtype=np.float64).reshape(v.shape) % 7 + 1
    return (len(frames), int(labels.sum()), int(np.isnan(v).sum()), float(np.nansum(v)),
            float(np.nansum(v * weights)))


def test_default_output_is_pinned():
    """The default preset renders exactly what the generator always rendered."""
    assert synthetic.participant_profile(0).left_handed
    assert synthetic.participant_profile(3).rests_other_hand
    for phrase, pid, seed, *expected in DEFAULT_CHECKSUMS:
        for difficulty in ("default", synthetic.Difficulty()):
            got = checksum(*synthetic.render_sequence(phrase, pid, np.random.default_rng(seed),
                                                      difficulty))
            assert got[:3] == tuple(expected[:3]), (phrase, got)
            np.testing.assert_allclose(got[3:], expected[3:], rtol=1e-9, err_msg=phrase)


def test_presets_are_difficulties():
    assert synthetic.DIFFICULTIES["default"] == synthetic.Difficulty()
    hard = synthetic.DIFFICULTIES["hard"]
    assert hard.varies_rate and not synthetic.Difficulty().varies_rate
    with pytest.raises(ValueError, match="known: default, hard"):
        synthetic.render_sequence("a", 1, np.random.default_rng(0), "nightmare")
    with pytest.raises(ValueError, match="rate_low"):
        synthetic.Difficulty(rate_low=2.0, rate_high=1.0)
    with pytest.raises(ValueError, match="coarticulation"):
        synthetic.Difficulty(coarticulation=1.5)


# Each effect of the hard preset, by its knobs.
HARD_EFFECTS = {
    "coarticulation": ("coarticulation", "context", "hold_scale", "transition_scale",
                       "max_transition", "smoothing"),
    "signer variants": ("style_scale", "variants", "variant_spread"),
    "wrist and camera": ("wrist_wobble", "camera_roll", "camera_zoom", "camera_yaw"),
    "detection": ("noise_scale", "missing_scale", "missing_burst", "occlusion"),
    "frame rate": ("rate_low", "rate_high", "speed_change"),
    "other hand": ("distractor", "distractor_frames", "distractor_motion", "distractor_reach"),
}


@pytest.mark.parametrize("effect", list(HARD_EFFECTS))
def test_each_hard_effect_changes_the_clips(effect):
    hard = synthetic.DIFFICULTIES["hard"]
    assert all(getattr(hard, k) != getattr(synthetic.Difficulty(), k)
               for k in HARD_EFFECTS[effect])  # the preset switches the effect on
    only = dataclasses.replace(synthetic.Difficulty(),
                               **{k: getattr(hard, k) for k in HARD_EFFECTS[effect]})
    for pid, seed in ((3, 0), (0, 1), (40, 2)):
        base = synthetic.render_sequence("cedar 12", pid, np.random.default_rng(seed))[0]
        changed = synthetic.render_sequence("cedar 12", pid, np.random.default_rng(seed), only)[0]
        assert base.shape != changed.shape or not np.array_equal(base, changed, equal_nan=True)


def test_hard_timing_varies_and_keeps_the_phrase():
    """Per-clip frame rates and speed changes spread the frames per character much wider."""
    spread = {}
    for preset in synthetic.DIFFICULTIES:
        per_char = [len(synthetic.render_sequence("maple street 12", pid,
                                                  np.random.default_rng(pid), preset)[0]) / 15
                    for pid in range(0, 255, 5)]
        spread[preset] = np.std(per_char)
    assert spread["hard"] > 1.5 * spread["default"], spread


def test_hard_other_hand_moves_but_the_signing_hand_dominates():
    seen_other = moving = frames = 0
    for pid in range(0, 255, 4):
        person = synthetic.participant_profile(pid)
        frames_, _ = synthetic.render_sequence("271097 bayshore boulevard", pid,
                                               np.random.default_rng(pid), "hard")
        p = frames_.reshape(len(frames_), 3, N_RAW).transpose(0, 2, 1)
        signing, other = ("left_hand", "right_hand") if person.left_handed else (
            "right_hand", "left_hand")
        sign_seen = ~np.isnan(p[:, part_slice(signing).start, 0])
        other_wrist = p[:, part_slice(other).start, :2]
        other_seen = ~np.isnan(other_wrist[:, 0])
        assert sign_seen.sum() > other_seen.sum()  # the pipeline picks the signing hand
        seen_other += other_seen.sum()
        frames += len(p)
        if other_seen.sum() > 1:
            moving += np.ptp(other_wrist[other_seen], axis=0).max() > 2 * person.palm
    assert seen_other > 0.15 * frames  # default: about 0.06
    assert moving >= 20  # of 64 clips


def test_hard_differs_from_default_for_the_same_seed(tmp_path):
    small = dict(n_train=3, n_supplemental=2, sequences_per_file=2, n_participants=3, seed=9)
    synthetic.generate(tmp_path / "default", **small)
    synthetic.generate(tmp_path / "hard", **small, difficulty="hard")
    for csv_name, _ in SPLITS:  # the same sequences, ids and phrases
        assert (tmp_path / "default" / csv_name).read_bytes() == (
            tmp_path / "hard" / csv_name).read_bytes()
    default = frames_by_sequence(read_folder(tmp_path / "default")[1])
    hard = frames_by_sequence(read_folder(tmp_path / "hard")[1])
    assert default.keys() == hard.keys()
    for sid, frames in default.items():
        assert frames.shape != hard[sid].shape or not np.array_equal(frames, hard[sid],
                                                                     equal_nan=True)


def test_manifest_records_the_difficulty(tmp_path):
    small = dict(n_train=2, n_supplemental=1, sequences_per_file=2, n_participants=2, seed=1)
    out = tmp_path / "data"
    synthetic.generate(out, **small)
    # A default folder's manifest is the one the generator always wrote.
    assert json.loads((out / "synthetic_manifest.json").read_text()) == {
        "generator": "asl_keras.data.synthetic", "n_train": 2, "n_supplemental": 1,
        "sequences_per_file": 2, "n_participants": 2, "seed": 1}
    with pytest.raises(FileExistsError, match="--force"):
        synthetic.generate(out, **small, difficulty="hard")
    synthetic.generate(out, **small, difficulty="hard", force=True)
    manifest = json.loads((out / "synthetic_manifest.json").read_text())
    assert manifest["difficulty"] == "hard"
    assert manifest["difficulty_knobs"] == dataclasses.asdict(synthetic.DIFFICULTIES["hard"])
    synthetic.generate(out, **small, difficulty="hard")  # the same arguments again: fine
    with pytest.raises(FileExistsError, match="--force"):
        synthetic.generate(out, **small)
    with pytest.raises(ValueError, match="unknown difficulty"):
        synthetic.generate(tmp_path / "other", **small, difficulty="nightmare")


def test_cli_difficulty(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["--out", str(out), "--sequences", "2", "--per-file", "2", "--participants", "2"]
    assert synthetic.main(argv + ["--difficulty", "hard"]) == 0
    assert "difficulty hard" in capsys.readouterr().out
    assert json.loads((out / "synthetic_manifest.json").read_text())["difficulty"] == "hard"
    assert synthetic.main(argv) == 1  # a default run refuses the hard folder
    assert "--force" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        synthetic.main(argv + ["--difficulty", "nightmare"])
    assert e.value.code == 2 and "invalid choice: 'nightmare'" in capsys.readouterr().err


def test_config_difficulty_is_validated():
    demo = config_path("demo.yaml")
    assert config.load(demo).data.synthetic.difficulty == "default"
    cfg = config.load(demo, ["data.synthetic.difficulty=hard"])
    assert cfg.data.synthetic.difficulty == "hard"
    with pytest.raises(config.ConfigError,
                       match=r"data\.synthetic\.difficulty: must be one of default, hard"):
        config.load(demo, ["data.synthetic.difficulty=nightmare"])


def test_training_generates_the_configured_difficulty(tmp_path, monkeypatch):
    from asl_keras.training import run

    calls = []
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(run.synthetic, "generate", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setattr(run.convert, "convert", lambda source, records: None)
    cfg = config.load(config_path("demo.yaml"), [
        f"data.records={tmp_path / 'records'}", f"data.kaggle_dir={tmp_path / 'kaggle'}",
        "data.synthetic.difficulty=hard"])
    run.prepare_records(cfg)
    assert len(calls) == 1 and calls[0][1]["difficulty"] == "hard"
