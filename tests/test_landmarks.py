import numpy as np

from asl_keras import landmarks as L


def test_130_landmarks_in_reference_groups():
    assert L.NUM_LANDMARKS == 130 and len(set(L.LANDMARKS)) == 130
    assert L.LANDMARKS[40] == "left_hand_0" and L.LANDMARKS[61] == "right_hand_0"
    assert L.LANDMARKS[82:86] == ("face_1", "face_2", "face_98", "face_327")
    assert L.LANDMARKS[118] == "pose_12" and L.LANDMARKS[124] == "pose_11"
    assert len(L.FACE_IDX) == 76 and len(L.POSE_IDX) == 12


def test_selected_columns_follow_native_parquet_order():
    raw = L.raw_columns()
    assert len(raw) == 1629 and raw[0] == "x_face_0" and raw[468] == "x_left_hand_0"
    pos = [raw.index(c) for c in L.SELECTED_COLUMNS]
    assert len(pos) == 390 and pos == sorted(pos)


def test_to_model_layout_puts_each_column_in_its_place():
    # frame value = native column position, so the layout says where each column went
    frames = np.arange(390, dtype=np.float32)[None]
    out = L.to_model_layout(frames)
    assert out.shape == (1, 130, 3)
    for lm in (0, 45, 129):
        for c, coord in enumerate("xyz"):
            col = f"{coord}_{L.LANDMARKS[lm]}"
            assert L.SELECTED_COLUMNS[int(out[0, lm, c])] == col


def test_reference_order_and_native_order_agree():
    rng = np.random.default_rng(0)
    model = rng.random((4, 130, 3), dtype=np.float32)
    native = np.empty((4, 390), np.float32)
    native[:, L.NATIVE_TO_MODEL] = model
    reference = model.transpose(0, 2, 1).reshape(4, 390)  # x block, y block, z block
    np.testing.assert_array_equal(L.to_model_layout(native), model)
    np.testing.assert_array_equal(L.to_model_layout(reference, L.REFERENCE_TO_MODEL), model)


def test_tensor_input_gives_the_same_layout():
    import tensorflow as tf

    frames = np.random.default_rng(1).random((3, 390), dtype=np.float32)
    np.testing.assert_array_equal(L.to_model_layout(tf.constant(frames)).numpy(),
                                  L.to_model_layout(frames))


def test_mirror_is_an_involution_swapping_hands_and_body_sides():
    assert (L.MIRROR[L.MIRROR] == np.arange(130)).all()
    np.testing.assert_array_equal(L.MIRROR[L.LEFT_HAND_IDX], L.RIGHT_HAND_IDX)
    assert L.LANDMARKS[L.MIRROR[118]] == "pose_11"
    assert sorted(L.MIRROR[L.FACE_IDX]) == sorted(L.FACE_IDX)


def test_sample_clips_are_landmarks_of_the_recorded_kind():
    clips = L.sample_clips(30, seed=3, frames=(40, 60))
    assert [c.shape[1] for c in clips] == [390] * 30 and all(40 <= len(c) <= 60 for c in clips)
    assert all(c.dtype == np.float32 for c in clips)
    model = [L.to_model_layout(c) for c in clips]  # [T, 130, 3]
    body = np.concatenate([L.FACE_IDX, L.POSE_IDX])
    for m in model:
        assert not np.isnan(m[:, body]).any()  # face and body always seen
        for hand in (L.LEFT_HAND_IDX, L.RIGHT_HAND_IDX):
            seen = ~np.isnan(m[:, hand, 0])
            assert (seen.all(1) | ~seen.any(1)).all()  # a hand is seen whole or not at all
        face = m[:, L.FACE_IDX, :2].reshape(-1, 2)  # x, y: a face in the upper middle
        assert np.all(np.abs(face.mean(0) - [0.5, 0.3]) < 0.1) and np.all(face.std(0) < 0.1)
    # the signing hand moves: its wrist travels further than the face jitters
    wrists = [m[:, L.RIGHT_HAND_IDX[0], :2] for m in model]
    travel = [np.nanmax(np.abs(w - np.nanmean(w, 0))) for w in wrists if np.isfinite(w).any()]
    assert np.median(travel) > 5 * np.median([m[:, L.FACE_IDX[0], :2].std(0).max()
                                              for m in model])
    missing = np.mean([np.isnan(m[:, hand, 0]).all(1).mean() for m in model
                       for hand in (L.LEFT_HAND_IDX, L.RIGHT_HAND_IDX)])
    assert 0.3 < missing < 0.7  # about one hand of the two is absent
    again = L.sample_clips(30, seed=3, frames=(40, 60))
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(clips, again, strict=True))
    assert not np.array_equal(clips[0][:40], L.sample_clips(1, seed=4, frames=(40, 60))
                              [0][:40], equal_nan=True)
