"""DominantHandFeatures: the same features whichever hand signs, wherever and however large."""

from __future__ import annotations

import numpy as np

from asl_keras import landmarks
from asl_keras.layers.feature_extractor import DominantHandFeatures

L, R = landmarks.LEFT_HAND_IDX, landmarks.RIGHT_HAND_IDX


def clip_with_hand(hand, slot, t=6, missing_frames=()):
    """`[1, t, 130, 3]` normalised landmarks with `hand [t, 21, 3]` in `slot`, rest missing."""
    x = np.zeros((1, t, 130, 3), "float32")
    x[0][:, slot] = hand  # (x[0, :, slot] would put the landmark axis first)
    for f in missing_frames:
        x[0, f][slot] = 0.0
    return x


def test_left_hand_mirrored_equals_right_hand_and_position_scale_do_not_matter():
    rng = np.random.default_rng(0)
    hand = rng.normal(size=(6, 21, 3)).astype("float32")
    layer = DominantHandFeatures(8)
    layer.build((None, None, 130, 3))
    mask = np.ones((1, 6), "float32")
    right = layer(clip_with_hand(hand, R), mask).numpy()
    mirrored = hand * np.array([-1, 1, 1], "float32")
    left = layer(clip_with_hand(mirrored, L), mask).numpy()
    np.testing.assert_allclose(left, right, atol=1e-5)
    moved = layer(clip_with_hand(hand * 2.5 + np.array([0.3, -0.7, 0.1], "float32"), R),
                  mask).numpy()
    np.testing.assert_allclose(moved, right, atol=1e-4)
    assert np.abs(right).max() > 0


def test_frames_without_the_hand_and_padding_give_zero():
    hand = np.random.default_rng(1).normal(size=(6, 21, 3)).astype("float32")
    layer = DominantHandFeatures(8)
    layer.build((None, None, 130, 3))
    mask = np.array([[1, 1, 1, 1, 0, 0]], "float32")
    out = layer(clip_with_hand(hand, R, missing_frames=(1,)), mask).numpy()
    assert np.abs(out[0, [1, 4, 5]]).max() == 0.0
    assert np.abs(out[0, [0, 2, 3]]).min() > 0 or np.abs(out[0, 0]).max() > 0


def test_the_hand_seen_more_often_is_the_dominant_one():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 6, 21, 3)).astype("float32")
    layer = DominantHandFeatures(8)
    layer.build((None, None, 130, 3))
    mask = np.ones((1, 6), "float32")
    both = clip_with_hand(a, R)
    both[0, :2][:, L] = b[:2]  # the left hand shows up in 2 frames only
    only_right = clip_with_hand(a, R)
    np.testing.assert_allclose(layer(both, mask).numpy(), layer(only_right, mask).numpy(),
                               atol=1e-6)
