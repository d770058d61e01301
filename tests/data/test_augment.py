"""Each augmentation's real behaviour: rates, invariants, static shapes, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from asl_keras import config, landmarks, vocab
from asl_keras.data import augment
from tests.paths import config_path

L = 96  # buffer length
CFG2 = config.load(config_path("cfg_2.yaml")).data.augment
DRAWS = 500


def make_sample(n=60, seed=0, fill=0.0, tokens="hello world", score=0.8, offset=0.0):
    """Random landmarks (a few missing points) in a buffer whose padding holds `fill`."""
    rng = np.random.default_rng(seed)
    x = np.full((L, 130, 3), fill, np.float32)
    x[:n] = rng.normal(size=(n, 130, 3)).astype(np.float32) + offset
    x[:n:7, 40:61] = 0.0  # a missing left hand every 7th frame
    ids = vocab.encode(tokens)
    tok = np.full(augment.TOKEN_LEN, vocab.PAD, np.int32)
    tok[: len(ids)] = ids
    return {"x": tf.constant(x), "n": tf.constant(n), "tokens": tf.constant(tok),
            "n_tokens": tf.constant(len(ids)), "score": tf.constant(score)}


def seeds(n):
    return [tf.constant([i, 17]) for i in range(n)]


def changed(a, b) -> bool:
    return bool(a["n"] != b["n"]) or not np.array_equal(a["x"].numpy(), b["x"].numpy())


def assert_rate(count, n, p):
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(count / n - p) <= 4 * sigma + 1e-9, (count / n, p)


@pytest.mark.parametrize("name,p,fn", [
    ("resample", CFG2.resample.p, lambda s, k: augment.resample(s, k, CFG2.resample)),
    ("dynamic_resample", CFG2.dynamic_resample.p,
     lambda s, k: augment.dynamic_resample(s, k, CFG2.dynamic_resample)),
    # s = 0 (1 of 20 shifts) leaves the sequence unchanged
    ("time_shift", CFG2.time_shift.p * 19 / 20,
     lambda s, k: augment.time_shift(s, k, CFG2.time_shift)),
    ("affine", CFG2.affine.p, lambda s, k: augment.affine(s, k, CFG2.affine)),
    ("fingers_drop", CFG2.fingers_drop.p,
     lambda s, k: augment.fingers_drop(s, k, CFG2.fingers_drop)),
    ("temporal_mask", CFG2.temporal_mask.p,
     lambda s, k: augment.temporal_mask(s, k, CFG2.temporal_mask)),
    ("flip", CFG2.flip, augment.flip),
])
def test_firing_rate_matches_the_configured_probability(name, p, fn):
    sample = make_sample()
    run = tf.function(augment.maybe(fn, p))
    hits = sum(changed(sample, run(sample, k)) for k in seeds(DRAWS))
    assert_rate(hits, DRAWS, p)


def test_part_drop_rates_per_part():
    sample = make_sample()
    run = tf.function(lambda s, k: augment.part_drop(s, k, CFG2.part_drop))
    counts = {"pose": 0, "face": 0, "hands": 0, "none": 0}
    for k in seeds(DRAWS):
        x = run(sample, k)["x"].numpy()[:60]
        if (x[:, landmarks.FACE_IDX] == 0).all():
            counts["face"] += 1
        elif (x[:, landmarks.HAND_IDX] == 0).all():
            counts["hands"] += 1
        elif (x[:, landmarks.POSE_IDX[6:]] == 0).all():
            counts["pose"] += 1
        else:
            counts["none"] += 1
    for part in ("pose", "face", "hands"):
        assert_rate(counts[part], DRAWS, getattr(CFG2.part_drop, part))


def test_flip_twice_is_identity_and_swaps_hands():
    sample = make_sample()
    once = augment.flip(sample)
    np.testing.assert_array_equal(augment.flip(once)["x"].numpy(), sample["x"].numpy())
    np.testing.assert_array_equal(once["x"].numpy()[:, landmarks.RIGHT_HAND_IDX, 1],
                                  sample["x"].numpy()[:, landmarks.LEFT_HAND_IDX, 1])
    np.testing.assert_array_equal(once["x"].numpy()[:, 61, 0], -sample["x"].numpy()[:, 40, 0])


def test_affine_keeps_missing_points_at_zero_and_moves_the_rest():
    sample = make_sample()
    before = sample["x"].numpy()
    for k in seeds(20):
        after = augment.affine(sample, k, CFG2.affine)["x"].numpy()
        missing = (before == 0).all(-1)
        assert missing.any() and (after[missing] == 0).all()
        assert not np.allclose(after[~missing][:, :2], before[~missing][:, :2])
        np.testing.assert_array_equal(after[~missing][:, 2], before[~missing][:, 2])  # z kept


@pytest.mark.parametrize("fn", [
    lambda s, k: augment.temporal_mask(s, k, CFG2.temporal_mask),
    lambda s, k: augment.fingers_drop(s, k, CFG2.fingers_drop),
])
def test_masks_touch_only_valid_frames(fn):
    sample = make_sample(n=50, fill=5.0)  # padding is a sentinel, not zero
    for k in seeds(30):
        out = fn(sample, k)["x"].numpy()
        np.testing.assert_array_equal(out[50:], sample["x"].numpy()[50:])
        assert (out[:50] == 0).sum() > (sample["x"].numpy()[:50] == 0).sum()


def test_resample_length_follows_the_rate():
    sample = make_sample(n=40)
    lengths = {int(augment.resample(sample, k, CFG2.resample)["n"]) for k in seeds(60)}
    assert min(lengths) >= int(40 * 0.3) and max(lengths) <= int(40 * 2.0) and len(lengths) > 10


def test_resample_squeezes_into_the_buffer_without_losing_the_end():
    sample = make_sample(n=90)
    cfg = config.Resample(p=1.0, rate=(2.0, 2.0))
    out = augment.resample(sample, tf.constant([1, 2]), cfg)
    assert int(out["n"]) == L
    np.testing.assert_array_equal(out["x"].numpy()[-1], sample["x"].numpy()[89])


def test_time_shift_prepends_zeros_or_drops_frames():
    sample = make_sample(n=30)
    for k in seeds(40):
        out = augment.time_shift(sample, k, CFG2.time_shift)
        d = int(out["n"]) - 30
        x, x0 = out["x"].numpy(), sample["x"].numpy()
        if d > 0:
            assert (x[:d] == 0).all()
            np.testing.assert_array_equal(x[d:30 + d], x0[:30])
        elif d < 0:
            np.testing.assert_array_equal(x[:30 + d], x0[-d:30])


def test_cutmix_joins_tail_and_head_of_the_pair_in_order():
    a = make_sample(n=40, tokens="aaaaaaaaaa", score=1.0, offset=100.0, seed=1)
    b = make_sample(n=60, tokens="bbbbbbbbbbbbbbbbbbbb", score=0.0, offset=-100.0, seed=2)
    orders = set()
    for k in seeds(40):
        out = augment.cutmix(a, b, k)
        n, nt = int(out["n"]), int(out["n_tokens"])
        text = vocab.decode(out["tokens"].numpy()[:nt])
        from_a = out["x"].numpy()[:n, 0, 0] > 0  # a's frames are around +100
        a_first = text[0] == "a"
        orders.add(a_first)
        # the tail of the first sequence, then the head of the second, for phrase and frames
        assert text == text[0] * text.count(text[0]) + text[-1] * (nt - text.count(text[0]))
        assert from_a[0] == a_first and from_a[-1] != a_first
        switch = np.flatnonzero(from_a != from_a[0])[0]
        assert (from_a[:switch] == a_first).all() and (from_a[switch:] != a_first).all()
        # phrase and frames were cut at the same ratio c; the score is mixed with it
        # (self a scores 1, partner b scores 0; tail length = n - round(n * c))
        c = 1 - switch / (40 if a_first else 60)
        expected = 1 - c if a_first else c  # c*partner + (1-c)*self, or c*self + (1-c)*partner
        assert abs(float(out["score"]) - expected) <= 1 / 40 + 1e-6
        assert 0 < n <= L
    assert orders == {True, False}


def test_whole_recipe_has_static_shapes_under_xla_and_is_deterministic():
    a, b = make_sample(seed=3), make_sample(seed=4, tokens="abc")
    run = tf.function(lambda s, p, k: augment.augment(s, p, k, CFG2), jit_compile=True)
    outs = [run(a, b, k) for k in seeds(6)]
    for out in outs:
        assert out["x"].shape == (L, 130, 3) and out["tokens"].shape == (augment.TOKEN_LEN,)
    again = run(a, b, seeds(6)[3])
    np.testing.assert_array_equal(again["x"].numpy(), outs[3]["x"].numpy())
    assert not np.array_equal(outs[0]["x"].numpy(), outs[1]["x"].numpy())


def test_labels_match_the_numpy_reference():
    ids = vocab.encode("3 creekhouse")
    tok = np.full(augment.TOKEN_LEN, vocab.PAD, np.int32)
    tok[: len(ids)] = ids
    np.testing.assert_array_equal(augment.labels(tok, len(ids)).numpy(), vocab.to_labels(ids))
