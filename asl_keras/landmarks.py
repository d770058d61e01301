"""Which landmarks the model sees, in which order, and how the parquet columns map onto them.

The only module that lists landmark indices. Facts from the 1st-place solution (see
docs/reference.md, 'Landmarks and columns'): 130 landmarks = 40 lips, left hand 21, right hand 21,
4 nose, 16 right-eye, 16 left-eye face points, 12 pose points.

Two orders matter:
- the *model order* (`LANDMARKS`): the 130 landmarks in the reference order, laid out as
  `[T, 130, 3]` (x, y, z) everywhere inside the pipeline and the model;
- the *native order* (`SELECTED_COLUMNS`): the same 390 columns in the order they appear in a
  Kaggle parquet file (all x, then y, then z; face, left_hand, pose, right_hand). Records store
  frames in this order and `inference_args.json` lists it, because the competition harness may
  hand columns over in the file's order whatever order was requested. `to_model_layout` is the
  one function that turns native-order frames into the model layout.
"""

from __future__ import annotations

import csv

import numpy as np

from asl_keras import resources

COORDS = ("x", "y", "z")
# Kaggle parquet: per coordinate, these parts in this order, with these landmark counts.
PARTS = (("face", 468), ("left_hand", 21), ("pose", 33), ("right_hand", 21))
NUM_RAW_LANDMARKS = sum(n for _, n in PARTS)  # 543

LIPS = (0, 61, 185, 40, 39, 37, 267, 269, 270, 409, 291, 146, 91, 181, 84, 17, 314, 405, 321, 375,
        78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
NOSE = (1, 2, 98, 327)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)
POSE = (12, 14, 16, 18, 20, 22, 11, 13, 15, 17, 19, 21)

LANDMARKS: tuple[str, ...] = (
    tuple(f"face_{i}" for i in LIPS)
    + tuple(f"left_hand_{i}" for i in range(21))
    + tuple(f"right_hand_{i}" for i in range(21))
    + tuple(f"face_{i}" for i in NOSE + RIGHT_EYE + LEFT_EYE)
    + tuple(f"pose_{i}" for i in POSE)
)
NUM_LANDMARKS = len(LANDMARKS)  # 130


def _slice(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count)


# Positions of each part in model order (used by part normalisation and the augmentations).
LIPS_IDX = _slice(0, 40)
LEFT_HAND_IDX = _slice(40, 21)
RIGHT_HAND_IDX = _slice(61, 21)
FACE_IDX = np.concatenate([LIPS_IDX, _slice(82, 36)])  # lips + nose + eyes: 76 points
POSE_IDX = _slice(118, 12)
HAND_IDX = np.concatenate([LEFT_HAND_IDX, RIGHT_HAND_IDX])
# Fingers of one hand (landmarks 1-4, 5-8, ...; the wrist 0 belongs to no finger).
FINGERS = tuple(tuple(range(1 + 4 * f, 5 + 4 * f)) for f in range(5))


def raw_columns() -> list[str]:
    """All 1,629 landmark columns of a Kaggle parquet file, in native order (without `frame`)."""
    return [f"{c}_{part}_{i}" for c in COORDS for part, n in PARTS for i in range(n)]


def _native_position(column: str) -> int:
    coord, name = column.split("_", 1)
    part, idx = name.rsplit("_", 1)
    offset = 0
    for p, n in PARTS:
        if p == part:
            return COORDS.index(coord) * NUM_RAW_LANDMARKS + offset + int(idx)
        offset += n
    raise KeyError(column)


# The 390 columns the model needs, sorted in native parquet order.
SELECTED_COLUMNS: tuple[str, ...] = tuple(
    sorted((f"{c}_{lm}" for c in COORDS for lm in LANDMARKS), key=_native_position)
)
# The reference's own column order (130 x, then 130 y, then 130 z, in model order); the
# 1st-place numpy data and the parity fixtures use it.
REFERENCE_COLUMNS: tuple[str, ...] = tuple(f"{c}_{lm}" for c in COORDS for lm in LANDMARKS)


def layout_index(columns) -> np.ndarray:
    """Int array [130, 3]: for each model landmark and coordinate, its position in `columns`."""
    pos = {c: i for i, c in enumerate(columns)}
    missing = [f"{c}_{lm}" for lm in LANDMARKS for c in COORDS if f"{c}_{lm}" not in pos]
    if missing:
        raise KeyError(f"{len(missing)} required landmark columns missing, e.g. {missing[:3]}")
    return np.asarray([[pos[f"{c}_{lm}"] for c in COORDS] for lm in LANDMARKS], dtype=np.int32)


NATIVE_TO_MODEL = layout_index(SELECTED_COLUMNS)
REFERENCE_TO_MODEL = layout_index(REFERENCE_COLUMNS)


def to_model_layout(frames, index: np.ndarray = NATIVE_TO_MODEL):
    """`[..., 390]` frames in native column order -> `[..., 130, 3]` in model order.

    Works on numpy arrays and on TF/Keras tensors (a gather along the last axis), so the data
    pipeline and the exported TFLite graph share it. Pass `index=REFERENCE_TO_MODEL` for frames in
    the reference's x/y/z-blocked order.
    """
    if isinstance(frames, np.ndarray):
        return frames[..., index]
    from keras import ops  # layers and tf.function graphs

    return ops.take(frames, ops.convert_to_tensor(index), axis=-1)


def _load_mirror() -> np.ndarray:
    with resources.path("landmark_lr_symmetry.csv").open("r", encoding="utf-8") as f:
        pairs = {row["id"]: row["corresponding_id"] for row in csv.DictReader(f)}
    pos = {lm: i for i, lm in enumerate(LANDMARKS)}
    return np.asarray([pos[pairs[lm]] for lm in LANDMARKS], dtype=np.int32)


# MIRROR[i] is the model-order position of landmark i's left/right mirror image.
MIRROR = _load_mirror()


def sample_clips(count: int, seed: int = 0, frames: tuple[int, int] = (50, 250)
                 ) -> list[np.ndarray]:
    """`count` clips of random landmarks that look like recorded ones but spell nothing.

    Each clip is `[T, 390]` float32 in SELECTED_COLUMNS order, `T` uniform in `frames`: a still
    face and body with a little jitter, a hand of a random shape moving on a smooth random path
    and missing in about a tenth of the frames, the other hand absent in most clips or resting.
    Coordinates are of MediaPipe's kind (x, y in [0, 1] over the image, z small around 0, the
    pose's z further back). For checks that compare two runs of one model, such as the TFLite
    export against Keras when no records are at hand and the latency benchmarks: the model gets
    inputs of the recorded kind, NaN handling included, without a data set.
    """
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(count):
        n = int(rng.integers(frames[0], frames[1] + 1))
        points = np.empty((NUM_LANDMARKS, 3))
        points[FACE_IDX] = rng.normal([0.5, 0.28, -0.03], [0.05, 0.05, 0.01], (len(FACE_IDX), 3))
        points[POSE_IDX] = rng.normal([0.52, 0.63, -0.5], [0.17, 0.17, 0.2], (len(POSE_IDX), 3))
        shape = rng.normal(0.0, [0.04, 0.04, 0.02], (21, 3))
        shape[0] = 0.0  # the wrist is where the hand is
        signing, other = ((RIGHT_HAND_IDX, LEFT_HAND_IDX) if rng.random() < 0.8
                          else (LEFT_HAND_IDX, RIGHT_HAND_IDX))
        points[other] = rng.normal([0.6, 0.9, 0.0], 0.03, (21, 3))  # resting low in the frame
        clip = points + rng.normal(0.0, 0.002, (n, NUM_LANDMARKS, 3))
        path = np.cumsum(rng.normal(0.0, 0.008, (n, 3)), axis=0) * [1, 1, 0.3]
        curl = np.cumsum(rng.normal(0.0, 0.002, (n, 21, 3)), axis=0)
        clip[:, signing] = [0.4, 0.42, 0.0] + path[:, None] + shape + curl
        clip[np.ix_(rng.random(n) < 0.1, signing)] = np.nan
        if rng.random() < 0.8:
            clip[:, other] = np.nan
        native = np.empty((n, 3 * NUM_LANDMARKS), np.float32)
        native[:, NATIVE_TO_MODEL] = clip  # model layout back to the columns' order
        clips.append(native)
    return clips


def _edges(pairs, names) -> tuple[tuple[int, int], ...]:
    pos = {lm: i for i, lm in enumerate(LANDMARKS)}
    return tuple((pos[names(a)], pos[names(b)]) for a, b in pairs)


# Skeleton edges in model order, for drawing (MediaPipe hand topology; arms from the shoulders).
_HAND = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10),
         (10, 11), (11, 12), (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18),
         (18, 19), (19, 20))
SKELETON_EDGES = (
    _edges(_HAND, lambda i: f"left_hand_{i}") + _edges(_HAND, lambda i: f"right_hand_{i}")
    + _edges(((11, 12), (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (12, 14), (14, 16),
              (16, 18), (16, 20), (16, 22)), lambda i: f"pose_{i}")
)
