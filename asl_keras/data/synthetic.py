"""Synthetic fingerspelling data written in exactly the Kaggle competition layout.

The folder it writes can stand in for the real dataset anywhere (conversion, training, tests):
`train.csv` and `supplemental_metadata.csv` (`path,file_id,sequence_id,participant_id,phrase`),
`train_landmarks/<file_id>.parquet` and `supplemental_landmarks/<file_id>.parquet` (index
`sequence_id`, column `frame`, then the 1,629 float32 landmark columns in native order) and
`character_to_prediction_index.json`.

How a clip is made: each of the 59 characters is a fixed hand configuration (finger flexion,
finger spread, wrist rotation) driven through a small forward-kinematics model of the 21 MediaPipe
hand landmarks. A phrase is held character by character with eased transitions, framed by a
resting pose. Participants differ in handedness, hand size, camera placement, speed, personal
variation of each shape, noise and detection dropouts; face and pose sway slowly and the
signing arm follows the hand.

Difficulty presets (`DIFFICULTIES`, chosen with `difficulty=` / `--difficulty` /
`data.synthetic.difficulty`): each is a `Difficulty`, one plain-number knob per effect.
`default` is the data described above, learnable but easy (a small model scores ~0.93-0.97); its
output is pinned by a test and never changes. `hard` adds co-articulation (each held shape
blends into its neighbours and depends on the previous character; shorter holds, longer
transitions, smoothed motion, so shapes are not always reached), several style variants of each
shape per signer and a larger personal spread, slow extra wrist rotation and a moving camera
(roll, zoom, rotation about the vertical axis), more dropouts plus long occlusions of the signing
hand, per-clip frame-rate factors and speed changes within a clip, and a moving non-signing hand
that sometimes enters the signing area (the signing hand stays the one detected most often).
A preset other than `default` is recorded in the folder's manifest with its knobs.

Reproducibility: the alphabet and the participant profiles come from constant seeds, so folders
made with different `seed`s agree on them; everything else comes from `np.random.default_rng`
streams keyed by `(seed, stream, split, index)`, so a sequence does not depend on how sequences
are grouped into files. The metadata (ids, participants, phrases) does not depend on the
difficulty; the `hard` preset's signer variants and context table come from constant seeds too.

Files are written through `tf.io.gfile`, so the folder may be local, `gs://` or `ram://`.
TensorFlow is imported only by the functions that touch files: importing this module and
rendering sequences need none.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from asl_keras import landmarks, resources, vocab

# ---------------------------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------------------------

_SHAPE_SEED = 20230511  # constant: every folder, whatever its seed, shares one alphabet
_PROFILE_SEED = 543  # constant: a participant id looks the same in every folder
_SEQUENCE_STREAM, _FILE_STREAM, _PARTICIPANT_STREAM = 0, 1, 2

_MAX_PARTICIPANT_ID = 254  # the real ids range over 0..254
_SEQUENCE_ID_BASE, _SEQUENCE_ID_SLOT = 1_000_000_000, 500  # 10-digit ids, unique across splits
_FILE_ID_BASE, _FILE_ID_SLOT = 1_000_000, 10_000_000
_MANIFEST = "synthetic_manifest.json"  # the generation arguments, to recognise our own folders
_CHAR_MAP = "character_to_prediction_index.json"
_METADATA_COLUMNS = ["path", "file_id", "sequence_id", "participant_id", "phrase"]


@dataclass(frozen=True)
class _Split:
    """One half of the Kaggle folder: its code in the seed streams, CSV and parquet folder."""

    code: int
    csv_name: str
    folder: str


TRAIN = _Split(0, "train.csv", "train_landmarks")
SUPPLEMENTAL = _Split(1, "supplemental_metadata.csv", "supplemental_landmarks")

# ---------------------------------------------------------------------------------------------
# Hand model
# ---------------------------------------------------------------------------------------------
# A right hand seen from the camera with the palm towards it, in palm lengths: x towards the
# thumb, y along the fingers, z negative towards the camera (MediaPipe's sign). Fingers in
# MediaPipe order: thumb, index, middle, ring, pinky; the wrist is landmark 0 at the origin.
_FINGER_BASES = np.array([[0.22, 0.20, -0.05], [0.28, 0.95, 0.0], [0.08, 1.0, 0.0],
                          [-0.12, 0.95, 0.0], [-0.30, 0.85, 0.0]])
_SEGMENTS = np.array([[0.35, 0.30, 0.25], [0.42, 0.25, 0.20], [0.46, 0.28, 0.22],
                      [0.43, 0.26, 0.21], [0.34, 0.20, 0.18]])
_SPLAY = np.array([0.85, 0.10, 0.0, -0.10, -0.22])  # rest direction of each finger, rad from y
# Direction each finger curls towards: fingers towards the camera, the thumb across the palm.
_BEND = np.array([[-0.6, 0.0, -0.8]] + [[0.0, 0.0, -1.0]] * 4)
_DIP_COUPLING = 0.6  # the last joint bends with the middle one, as in real fingers

# Joint parameters: flexion at the base joint (5), at the middle joint (5), spread (5), then
# wrist roll (in the image plane), pitch and yaw.
N_PARAMS = 18
_PARAM_LOW = np.r_[np.full(5, -0.2), np.zeros(5), np.full(5, -0.3), -0.9, -0.6, -0.9]
_PARAM_HIGH = np.r_[np.full(5, 1.5), np.full(5, 1.5), np.full(5, 0.3), 0.9, 0.6, 0.9]
NEUTRAL = np.r_[np.full(5, 0.3), np.full(5, 0.4), np.zeros(8)]  # relaxed hand between phrases
_REST = NEUTRAL + np.r_[np.zeros(15), -np.pi / 2, 0.8, 0.0]  # idle hand lying across the belly
_CANDIDATES = 4000  # random shapes the alphabet is picked from

# How one rendition differs from the ideal shape (radians).
_INSTANCE_JITTER = 0.05
_SLIDE = 0.6  # a repeated letter is signed again this far to the side (palm lengths)


def _rotation(angles: np.ndarray) -> np.ndarray:
    """`[..., 3]` (roll about z, pitch about x, yaw about y) -> `[..., 3, 3]` rotation matrices."""
    roll, pitch, yaw = np.moveaxis(angles, -1, 0)
    one, zero = np.ones_like(roll), np.zeros_like(roll)

    def matrix(*entries: np.ndarray) -> np.ndarray:  # row-major 3x3
        return np.stack(entries, axis=-1).reshape(roll.shape + (3, 3))

    cr, sr, cp, sp, cy, sy = (np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch),
                              np.cos(yaw), np.sin(yaw))
    rz = matrix(cr, -sr, zero, sr, cr, zero, zero, zero, one)
    rx = matrix(one, zero, zero, zero, cp, -sp, zero, sp, cp)
    ry = matrix(cy, zero, sy, zero, one, zero, -sy, zero, cy)
    return rz @ rx @ ry


def hand_pose(params: np.ndarray) -> np.ndarray:
    """Forward kinematics: joint parameters `[..., 18]` -> hand landmarks `[..., 21, 3]`.

    Coordinates are in palm lengths in the hand frame described above, wrist at the origin.
    """
    params = np.asarray(params, dtype=np.float64)
    flex_base, flex_mid, spread = params[..., 0:5], params[..., 5:10], params[..., 10:15]
    angle = _SPLAY + spread
    along = np.stack([np.sin(angle), np.cos(angle), np.zeros_like(angle)], axis=-1)
    # Curl within the plane of the finger and its bend direction, so segments keep their length.
    bend = _BEND - np.sum(_BEND * along, axis=-1, keepdims=True) * along
    bend /= np.linalg.norm(bend, axis=-1, keepdims=True)
    theta = np.cumsum(np.stack([flex_base, flex_mid, _DIP_COUPLING * flex_mid], -1), -1)
    direction = (np.cos(theta)[..., None] * along[..., None, :]
                 + np.sin(theta)[..., None] * bend[..., None, :])  # [..., 5, 3, 3]
    joints = _FINGER_BASES[:, None, :] + np.cumsum(_SEGMENTS[..., None] * direction, axis=-2)
    base = np.broadcast_to(_FINGER_BASES[:, None, :], joints.shape[:-2] + (1, 3))
    fingers = np.concatenate([base, joints], axis=-2).reshape(joints.shape[:-3] + (20, 3))
    points = np.concatenate([np.zeros(fingers.shape[:-2] + (1, 3)), fingers], axis=-2)
    return points @ np.swapaxes(_rotation(params[..., 15:18]), -1, -2)


def _shape_distance(shapes: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Mean landmark distance (palm lengths) between `shapes [N, 21, 3]` and one `[21, 3]`."""
    return np.linalg.norm(shapes - shape, axis=-1).mean(axis=-1)


@lru_cache(maxsize=1)
def character_params() -> np.ndarray:
    """Joint parameters `[59, 18]` of each character's hand shape, indexed by character id.

    Farthest-point sampling over random candidates, started from the resting hand, keeps every
    character far from every other one and from the pose shown between phrases.
    """
    rng = np.random.default_rng(_SHAPE_SEED)
    candidates = rng.uniform(_PARAM_LOW, _PARAM_HIGH, size=(_CANDIDATES, N_PARAMS))
    shapes = hand_pose(candidates)
    nearest = _shape_distance(shapes, hand_pose(NEUTRAL))
    chosen = []
    for _ in range(vocab.NUM_CHARS):
        best = int(np.argmax(nearest))
        chosen.append(best)
        nearest = np.minimum(nearest, _shape_distance(shapes, shapes[best]))
    params = candidates[chosen]
    params.setflags(write=False)  # cached and shared: nobody may edit the alphabet
    return params


# ---------------------------------------------------------------------------------------------
# Participants
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Participant:
    """How one signer and their camera set-up look; derived from the participant id alone."""

    participant_id: int
    left_handed: bool
    body_center: tuple[float, float]  # image position of the chest (camera offset)
    body_scale: float  # camera distance: scales body, face and hands
    hand_size: float  # palm length in body units
    hold_frames: float  # mean frames a character is held (signing speed)
    transition_frames: float  # mean frames between two characters
    style: np.ndarray  # [59, 18] personal deviation of each character's joint parameters
    noise: float  # landmark jitter, in palm lengths
    missing_rate: float  # share of frames where the signing hand is not detected
    rests_other_hand: bool  # the other hand is sometimes visible, idle on the belly

    @property
    def palm(self) -> float:
        """Palm length in image units."""
        return self.hand_size * self.body_scale

    @property
    def side(self) -> int:
        """Image side of the signing hand: -1 left (a right hand faces the camera), +1 right."""
        return 1 if self.left_handed else -1


@lru_cache(maxsize=_MAX_PARTICIPANT_ID + 1)
def participant_profile(participant_id: int) -> Participant:
    """The fixed profile of `participant_id` (the same in every generated folder)."""
    rng = np.random.default_rng([_PROFILE_SEED, participant_id])
    # Shared plus per-character deviations: a signer's shapes are consistently a bit off.
    style = rng.normal(0, 0.06, N_PARAMS) + rng.normal(0, 0.06, (vocab.NUM_CHARS, N_PARAMS))
    style.setflags(write=False)  # the profile is cached and shared
    return Participant(
        participant_id=participant_id,
        left_handed=bool(rng.random() < 0.15),
        body_center=(0.5 + rng.uniform(-0.08, 0.08), 0.52 + rng.uniform(-0.05, 0.05)),
        body_scale=rng.uniform(0.85, 1.2),
        hand_size=rng.uniform(0.09, 0.12),
        hold_frames=rng.uniform(3.0, 6.0),
        transition_frames=rng.uniform(1.0, 3.0),
        style=style,
        noise=rng.uniform(0.03, 0.06),
        missing_rate=rng.uniform(0.03, 0.08),
        rests_other_hand=bool(rng.random() < 0.35),
    )


# ---------------------------------------------------------------------------------------------
# Difficulty presets
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difficulty:
    """How hard the clips are: one plain-number knob per effect, all off in `Difficulty()`.

    The defaults reproduce the original generator exactly (same values from the same random
    draws): an effect whose knob is at its default draws nothing from the sequence's rng. To
    make the data harder or easier, scale the knobs of `DIFFICULTIES["hard"]`; every effect is
    independent of the others. Frame counts are before the frame-rate change.
    """

    # --- co-articulation and timing ---
    # Fraction (0..1) of the way each character's key pose moves towards the mean of its
    # previous and next key poses (the resting pose at the ends of the phrase).
    coarticulation: float = 0.0
    # Std (radians) of a deviation of every joint parameter that is a fixed function of the
    # (previous character, character) pair (a constant-seeded table, `_context_table`): the
    # same letter looks different after different letters.
    context: float = 0.0
    hold_scale: float = 1.0  # multiplies the signer's mean hold length (held frames a character)
    transition_scale: float = 1.0  # multiplies the signer's mean transition length (frames)
    max_transition: int = 3  # longest transition between two key poses (frames)
    # Std (frames) of a Gaussian low-pass over the per-frame joint parameters and slides: short
    # holds no longer reach their shape. 0: off.
    smoothing: float = 0.0
    # --- the signer ---
    style_scale: float = 1.0  # multiplies the signer's personal deviation of every shape
    # Style variants per character per signer; each rendition of a character picks one at
    # random. The variants come from a constant-seeded stream per participant
    # (`_style_variants`), so the cached `Participant` is the same for every preset.
    variants: int = 1
    variant_spread: float = 0.0  # std (radians) of each variant's joint-parameter offset
    # --- wrist and camera, slowly varying within the clip (sinusoids of 40-120 frames) ---
    wrist_wobble: float = 0.0  # amplitude (radians) of extra wrist roll, pitch and yaw
    camera_roll: float = 0.0  # amplitude (radians) of an in-plane rotation of the whole scene
    camera_zoom: float = 0.0  # amplitude (fraction of the scale) of a zoom of the whole scene
    # Amplitude (radians) of a camera rotation about the vertical axis through the body centre:
    # foreshortens x and changes z of every part.
    camera_yaw: float = 0.0
    # --- detection ---
    noise_scale: float = 1.0  # multiplies the signer's landmark jitter of both hands
    missing_scale: float = 1.0  # multiplies the signer's share of frames without signing hand
    missing_burst: int = 4  # longest of those dropouts (frames; lengths uniform from 1)
    # Extra share of frames in which the signing hand is occluded, in long bursts of
    # occlusion_burst // 2 .. occlusion_burst frames. 0: off.
    occlusion: float = 0.0
    occlusion_burst: int = 16
    # --- frame rate ---
    # Per-clip frame-rate factor, uniform in [rate_low, rate_high]: every hold and transition
    # lasts this many times as many frames (1, 1: off).
    rate_low: float = 1.0
    rate_high: float = 1.0
    # Speed changes within the clip: the frame-rate factor is further multiplied by
    # exp(speed_change * sin(...)), a sinusoid over 40-120 frames (0: off).
    speed_change: float = 0.0
    # --- the other hand ---
    # Probability that a clip shows the non-signing hand moving (random shapes, wandering
    # wrist) instead of the signer's usual idle hand. 0: off.
    distractor: float = 0.0
    distractor_frames: float = 0.5  # longest share of the clip it is visible (shortest: half)
    distractor_motion: float = 0.0  # amplitude (palm lengths) of its wrist's wandering
    # Fraction (0..1) of the way from its resting place to the signing hand's place that its
    # wrist reaches at the closest point of a slow back-and-forth.
    distractor_reach: float = 0.0

    def __post_init__(self):
        for name in ("coarticulation", "distractor", "distractor_reach"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"Difficulty.{name} must be in [0, 1]")
        if not 0.0 < self.distractor_frames <= 1.0:
            raise ValueError("Difficulty.distractor_frames must be in (0, 1]")
        if not 0.0 < self.rate_low <= self.rate_high:
            raise ValueError("Difficulty needs 0 < rate_low <= rate_high")
        if min(self.max_transition, self.variants, self.missing_burst, self.occlusion_burst) < 1:
            raise ValueError("Difficulty: max_transition, variants and burst lengths must be >= 1")
        if min(self.context, self.smoothing, self.variant_spread, self.wrist_wobble,
               self.camera_roll, self.camera_zoom, self.camera_yaw, self.occlusion,
               self.speed_change, self.distractor_motion) < 0:
            raise ValueError("Difficulty: amplitudes, spreads and rates must be >= 0")
        if min(self.hold_scale, self.transition_scale, self.style_scale, self.noise_scale,
               self.missing_scale) <= 0:
            raise ValueError("Difficulty: scales must be > 0")

    @property
    def varies_rate(self) -> bool:
        """Whether hold and transition lengths go through a frame-rate change."""
        return self.rate_low != 1.0 or self.rate_high != 1.0 or self.speed_change != 0.0


DIFFICULTIES = {
    "default": Difficulty(),
    # Calibrate here: someone trains the demo model on it and scales these numbers.
    "hard": Difficulty(
        coarticulation=0.3, context=0.1, hold_scale=0.6, transition_scale=1.5, max_transition=5,
        smoothing=1.0,
        style_scale=1.8, variants=3, variant_spread=0.12,
        wrist_wobble=0.25, camera_roll=0.1, camera_zoom=0.1, camera_yaw=0.3,
        noise_scale=1.5, missing_scale=2.0, missing_burst=6, occlusion=0.06, occlusion_burst=16,
        rate_low=0.6, rate_high=1.6, speed_change=0.25,
        distractor=0.6, distractor_frames=0.6, distractor_motion=1.0, distractor_reach=0.8,
    ),
}
_CONTEXT_SEED = 20230512  # constant: a (previous, current) character pair looks the same anywhere
_VARIANT_SEED = 544  # constant: a participant's style variants are the same in every folder


def difficulty_preset(difficulty: str | Difficulty) -> Difficulty:
    """The knobs of a preset name (a key of `DIFFICULTIES`), or `difficulty` itself."""
    if isinstance(difficulty, Difficulty):
        return difficulty
    try:
        return DIFFICULTIES[difficulty]
    except (KeyError, TypeError):
        raise ValueError(f"unknown difficulty {difficulty!r} (known: "
                         f"{', '.join(DIFFICULTIES)})") from None


@lru_cache(maxsize=1)
def _context_table() -> np.ndarray:
    """Unit-std joint-parameter deviations `[60, 59, 18]` by (previous, current) character id;
    previous id 59 is the pause before the phrase."""
    table = np.random.default_rng(_CONTEXT_SEED).standard_normal(
        (vocab.NUM_CHARS + 1, vocab.NUM_CHARS, N_PARAMS))
    table.setflags(write=False)  # cached and shared
    return table


@lru_cache(maxsize=4 * (_MAX_PARTICIPANT_ID + 1))
def _style_variants(participant_id: int, count: int) -> np.ndarray:
    """Unit-std style-variant offsets `[count, 59, 18]` of a participant (a stream of its own, so
    the profile and the default preset do not change; variant k is the same for every count)."""
    variants = np.random.default_rng([_VARIANT_SEED, participant_id]).standard_normal(
        (count, vocab.NUM_CHARS, N_PARAMS))
    variants.setflags(write=False)  # cached and shared
    return variants


# ---------------------------------------------------------------------------------------------
# Body templates (body units around the chest, x right and y down in the image, pose-style z)
# ---------------------------------------------------------------------------------------------
# The signer's right side appears on the image's left.
_POSE_TEMPLATE = np.array([
    [0.0, -0.24, -0.9],  # 0 nose
    [0.02, -0.29, -0.88], [0.035, -0.29, -0.88], [0.05, -0.29, -0.88],  # 1-3 left eye
    [-0.02, -0.29, -0.88], [-0.035, -0.29, -0.88], [-0.05, -0.29, -0.88],  # 4-6 right eye
    [0.08, -0.27, -0.6], [-0.08, -0.27, -0.6],  # 7, 8 ears
    [0.025, -0.2, -0.85], [-0.025, -0.2, -0.85],  # 9, 10 mouth
    [0.18, 0.0, -0.35], [-0.18, 0.0, -0.35],  # 11, 12 shoulders
    [0.24, 0.2, -0.3], [-0.24, 0.2, -0.3],  # 13, 14 elbows
    [0.2, 0.3, -0.35], [-0.2, 0.3, -0.35],  # 15, 16 wrists, idle on the belly
    [0.17, 0.31, -0.38], [-0.17, 0.31, -0.38],  # 17, 18 pinky
    [0.15, 0.3, -0.4], [-0.15, 0.3, -0.4],  # 19, 20 index
    [0.17, 0.28, -0.38], [-0.17, 0.28, -0.38],  # 21, 22 thumb
    [0.11, 0.48, 0.0], [-0.11, 0.48, 0.0],  # 23, 24 hips
    [0.11, 0.95, -0.05], [-0.11, 0.95, -0.05],  # 25, 26 knees
    [0.11, 1.4, -0.02], [-0.11, 1.4, -0.02],  # 27, 28 ankles
    [0.11, 1.45, 0.0], [-0.11, 1.45, 0.0],  # 29, 30 heels
    [0.13, 1.5, -0.08], [-0.13, 1.5, -0.08],  # 31, 32 foot index
])
# Pose landmarks of an arm: shoulder, elbow, wrist, pinky, index, thumb (left, right arm) and
# the hand landmarks the pose hand points sit on.
_ARM = {1: (11, 13, 15, 17, 19, 21), -1: (12, 14, 16, 18, 20, 22)}
_POSE_HAND_POINTS = (17, 5, 2)
_FACE_CENTER = np.array([0.0, -0.26])
_SIGNING_WRIST = np.array([0.10, -0.02])  # |x|: the hand signs between chest and shoulder
_REST_WRIST = np.array([0.2, 0.3])


def _ring(points: np.ndarray, indices: tuple[int, ...], center: tuple[float, float],
          radii: tuple[float, float], z: float) -> None:
    """Place face landmarks `indices` evenly on an ellipse (in place)."""
    a = np.linspace(0, 2 * np.pi, len(indices), endpoint=False)
    points[list(indices)] = np.stack([center[0] + radii[0] * np.cos(a),
                                      center[1] + radii[1] * np.sin(a), np.full_like(a, z)], -1)


@lru_cache(maxsize=1)
def _face_template() -> np.ndarray:
    """`[468, 3]` face points around the face centre; lips, nose and eyes where they belong."""
    rng = np.random.default_rng(_SHAPE_SEED + 1)
    r = np.sqrt(rng.uniform(0, 1, 468))
    a = rng.uniform(0, 2 * np.pi, 468)
    points = np.stack([0.075 * r * np.cos(a), 0.11 * r * np.sin(a),
                       -0.04 * np.sqrt(1 - r**2)], axis=-1)
    _ring(points, landmarks.LIPS[:20], (0.0, 0.06), (0.028, 0.012), -0.035)  # outer lip line
    _ring(points, landmarks.LIPS[20:], (0.0, 0.06), (0.02, 0.005), -0.03)  # inner lip line
    _ring(points, landmarks.RIGHT_EYE, (-0.032, -0.025), (0.014, 0.005), -0.025)
    _ring(points, landmarks.LEFT_EYE, (0.032, -0.025), (0.014, 0.005), -0.025)
    points[list(landmarks.NOSE)] = [[0.0, 0.02, -0.07], [0.0, 0.035, -0.06],
                                    [-0.012, 0.03, -0.045], [0.012, 0.03, -0.045]]
    points.setflags(write=False)  # cached and shared
    return points


# ---------------------------------------------------------------------------------------------
# Rendering one sequence
# ---------------------------------------------------------------------------------------------


def _repeat_slides(key_ids: np.ndarray) -> np.ndarray:
    """Sideways wrist offset per key pose: signers slide a doubled letter ("ll") to the side."""
    offsets = np.zeros(len(key_ids))
    for i in range(1, len(key_ids)):
        if key_ids[i] >= 0 and key_ids[i] == key_ids[i - 1]:
            offsets[i] = _SLIDE - offsets[i - 1]
    return offsets


def _timeline(phrase: str, person: Participant, rng: np.random.Generator,
              d: Difficulty) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame joint parameters `[T, 18]`, slide offsets `[T]` and character ids `[T]`.

    Key poses are rest, each character, rest; each is held for some frames and joined to the
    next by eased transition frames. The character id is -1 outside the held characters.
    """
    ids = vocab.encode(phrase)
    key_ids = np.r_[-1, ids, -1]
    style = person.style if d.style_scale == 1.0 else d.style_scale * person.style
    ideal = np.where(key_ids[:, None] >= 0,
                     character_params()[key_ids] + style[key_ids], NEUTRAL)
    key_params = ideal + rng.normal(0, _INSTANCE_JITTER, ideal.shape)
    key_offsets = _repeat_slides(key_ids)
    n_keys = len(key_ids)
    # Nominal segment lengths (frames): hold 0, move 0-1, hold 1, ..., hold n_keys - 1.
    seg_len = np.empty(2 * n_keys - 1)
    seg_len[0::2] = np.r_[rng.integers(3, 9),
                          person.hold_frames * d.hold_scale + rng.normal(0, 0.7, len(ids)),
                          rng.integers(3, 9)]
    seg_len[1::2] = np.clip(person.transition_frames * d.transition_scale
                            + rng.normal(0, 0.5, n_keys - 1), 1, d.max_transition)
    if d.varies_rate:
        seg_len *= _frame_rate(seg_len, d, rng)
    if d.variants > 1 or d.context:
        key_params[1:-1] += _character_deviation(key_ids, person, d, rng)
    if d.coarticulation:
        w = d.coarticulation
        key_params[1:-1] = ((1 - w) * key_params[1:-1]
                            + 0.5 * w * (key_params[:-2] + key_params[2:]))
    # At least 3 frames of rest at either end, 2 held frames a character, 1 frame a move.
    shortest = np.ones(2 * n_keys - 1)
    shortest[0::2] = 2
    shortest[[0, -1]] = 3
    seg_len = np.maximum(shortest, np.rint(seg_len)).astype(np.int64)
    seg_from = np.repeat(np.arange(n_keys), 2)[:-1]  # hold i: (i, i); move i: (i, i + 1)
    seg_to = seg_from + np.arange(2 * n_keys - 1) % 2
    src, dst = np.repeat(seg_from, seg_len), np.repeat(seg_to, seg_len)
    position = np.arange(seg_len.sum()) - np.repeat(np.cumsum(seg_len) - seg_len, seg_len)
    alpha = np.where(src != dst, (position + 1) / (np.repeat(seg_len, seg_len) + 1), 0.0)
    alpha = alpha * alpha * (3 - 2 * alpha)  # ease in and out, like a moving hand
    params = (1 - alpha)[:, None] * key_params[src] + alpha[:, None] * key_params[dst]
    offsets = (1 - alpha) * key_offsets[src] + alpha * key_offsets[dst]
    labels = np.where(src == dst, key_ids[src], -1)
    if d.smoothing:
        params, offsets = _smooth(params, d.smoothing), _smooth(offsets[:, None], d.smoothing)[:, 0]
    return params, offsets, labels


def _frame_rate(seg_len: np.ndarray, d: Difficulty, rng: np.random.Generator) -> np.ndarray:
    """Frames per nominal frame at the middle of each segment: the clip's frame-rate factor
    times a smooth speed change, so the clip's timeline is resampled at a varying rate."""
    clip = rng.uniform(d.rate_low, d.rate_high)
    period, phase = rng.uniform(40, 120), rng.uniform(0, 2 * np.pi)
    middle = np.cumsum(seg_len) - seg_len / 2
    return clip * np.exp(d.speed_change * np.sin(2 * np.pi * middle / period + phase))


def _character_deviation(key_ids: np.ndarray, person: Participant, d: Difficulty,
                         rng: np.random.Generator) -> np.ndarray:
    """Joint-parameter deviations `[n_keys - 2, 18]` of the characters of a phrase: the signer's
    style variant picked for each rendition plus the (previous, current) character context."""
    chars = key_ids[1:-1]
    deviation = np.zeros((len(chars), N_PARAMS))
    if d.variants > 1:
        pick = rng.integers(d.variants, size=len(chars))
        deviation += d.variant_spread * _style_variants(person.participant_id, d.variants)[
            pick, chars]
    if d.context:
        previous = np.where(key_ids[:-2] >= 0, key_ids[:-2], vocab.NUM_CHARS)
        deviation += d.context * _context_table()[previous, chars]
    return deviation


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass of `[T, k]` along time (std `sigma` frames), edges held."""
    radius = max(1, int(np.ceil(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    padded = np.pad(values, ((radius, radius), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=0)
    return windows @ (kernel / kernel.sum())


def _wave(n_frames: int, amplitude, rng: np.random.Generator) -> np.ndarray:
    """Slow sinusoidal wandering `[T, len(amplitude)]` with random periods and phases."""
    amplitude = np.atleast_1d(amplitude)
    period = rng.uniform(40, 120, amplitude.shape)
    phase = rng.uniform(0, 2 * np.pi, amplitude.shape)
    return amplitude * np.sin(2 * np.pi * np.arange(n_frames)[:, None] / period + phase)


def _project(shape: np.ndarray, wrist: np.ndarray, scale: float, mirror: int) -> np.ndarray:
    """Hand-frame points `[T, 21, 3]` (palm lengths) -> image coordinates, wrist at `wrist`.

    `mirror=-1` turns the right-hand model into a left hand; hand z stays relative to the wrist.
    """
    return np.stack([wrist[:, None, 0] + mirror * scale * shape[..., 0],
                     wrist[:, None, 1] - scale * shape[..., 1],
                     scale * shape[..., 2]], axis=-1)


def _jitter(points: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add detector noise; depth is estimated worse than x and y, so z gets twice the noise."""
    noise = rng.standard_normal(points.shape, dtype=np.float32)  # float32: twice as fast
    return points + noise * (sigma * np.array([1.0, 1.0, 2.0]))


def _bursts(n_frames: int, rate: float, rng: np.random.Generator, max_len: int = 4,
            min_len: int = 1) -> np.ndarray:
    """Boolean `[T]` mask covering about `rate` of the frames in bursts of min_len..max_len
    frames."""
    count = rng.poisson(rate * n_frames / ((min_len + max_len) / 2))
    starts = rng.integers(0, n_frames, count)
    lengths = rng.integers(min_len, max_len + 1, count)
    frames = starts[:, None] + np.arange(max_len)
    keep = (np.arange(max_len) < lengths[:, None]) & (frames < n_frames)
    mask = np.zeros(n_frames, dtype=bool)
    mask[frames[keep]] = True
    return mask


def _signing_hand(params: np.ndarray, offsets: np.ndarray, person: Participant,
                  body: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noise-free image landmarks `[T, 21, 3]` of the signing hand."""
    n = len(params)
    wander = _wave(n, rng.uniform(0.03, 0.12, 2), rng)  # the hand drifts a little while spelling
    anchor = np.array(person.body_center) + person.body_scale * (_SIGNING_WRIST * [person.side, 1])
    wrist = anchor + body + person.palm * (wander + np.stack([person.side * offsets,
                                                              np.zeros(n)], -1))
    return _project(hand_pose(params), wrist, person.palm, -person.side)


def _resting_hand(person: Participant, body: np.ndarray, rng: np.random.Generator,
                  noise: float) -> np.ndarray:
    """Image landmarks `[T, 21, 3]` of the idle hand: NaN, or visible for one stretch."""
    n = len(body)
    hand = np.full((n, 21, 3), np.nan)
    if not person.rests_other_hand:
        return hand
    wrist = (np.array(person.body_center) + body
             + person.body_scale * (_REST_WRIST * [-person.side, 1]))
    shape = hand_pose(_REST + rng.normal(0, 0.05, N_PARAMS))[None]
    # Seen for a minority of frames, so "the hand detected most often signs" stays true.
    start = int(rng.integers(0, n))
    stop = start + int(rng.integers(n // 10, 2 * n // 5 + 1))
    visible = _project(np.broadcast_to(shape, (n, 21, 3)), wrist, person.palm, person.side)
    hand[start:stop] = _jitter(visible, noise, rng)[start:stop]
    return hand


def _distractor_hand(person: Participant, body: np.ndarray, d: Difficulty,
                     rng: np.random.Generator, noise: float) -> np.ndarray:
    """Image landmarks `[T, 21, 3]` of a moving non-signing hand, visible for one stretch.

    It changes between random shapes and wanders from its resting place towards the signing
    hand's place and back.
    """
    n = len(body)
    keys = rng.uniform(_PARAM_LOW, _PARAM_HIGH, (int(rng.integers(2, 6)), N_PARAMS))
    at = np.linspace(0, len(keys) - 1, n)  # eased from key shape to key shape
    i = np.minimum(at.astype(np.int64), len(keys) - 2)
    t = (at - i)[:, None]
    t = t * t * (3 - 2 * t)
    params = (1 - t) * keys[i] + t * keys[i + 1]
    rest = person.body_scale * (_REST_WRIST * [-person.side, 1])
    signing = person.body_scale * (_SIGNING_WRIST * [person.side, 1])
    reach = d.distractor_reach * (0.5 - 0.5 * np.cos(
        2 * np.pi * np.arange(n) / rng.uniform(40, 120) + rng.uniform(0, 2 * np.pi)))
    wander = _wave(n, np.full(2, d.distractor_motion), rng)
    wrist = (np.array(person.body_center) + body + rest + reach[:, None] * (signing - rest)
             + person.palm * wander)
    length = max(1, int(n * rng.uniform(d.distractor_frames / 2, d.distractor_frames)))
    start = int(rng.integers(0, n - length + 1))
    hand = np.full((n, 21, 3), np.nan)
    visible = _project(hand_pose(params[start:start + length]), wrist[start:start + length],
                       person.palm, person.side)
    hand[start:start + length] = _jitter(visible, noise, rng)
    return hand


def _keep_signing_hand_dominant(other: np.ndarray, signing: np.ndarray) -> None:
    """Hide the other hand's last visible frames (in place) until the signing hand is the one
    detected in more frames, as the pipeline's choice of the dominant hand assumes."""
    seen = np.flatnonzero(~np.isnan(other[:, 0, 0]))
    excess = len(seen) - (int((~np.isnan(signing[:, 0, 0])).sum()) - 1)
    if excess > 0:
        other[seen[len(seen) - excess:]] = np.nan


def _camera(parts: list[tuple[np.ndarray, str]], person: Participant, d: Difficulty,
            rng: np.random.Generator) -> list[np.ndarray]:
    """Apply a slowly changing camera to every part `[T, n, 3]` of one clip.

    A rotation about the vertical axis through the body centre (x foreshortened, the depth of
    hand and face points shifts x; z changes with the distance from the part's reference: the
    wrist for hands, whose z is wrist-relative, the body centre otherwise), then an in-plane
    rotation and zoom around the body centre. `kind` is "hand", "face" or "pose"; pose z is
    not metric, so it does not shift x.
    """
    n = len(parts[0][0])
    roll, zoom, yaw = _wave(n, [d.camera_roll, d.camera_zoom, d.camera_yaw], rng).T
    cx, cy = person.body_center
    cos_y, sin_y = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    cos_r, sin_r = np.cos(roll)[:, None], np.sin(roll)[:, None]
    scale = (1 + zoom)[:, None]
    out = []
    for points, kind in parts:
        x, y, z = points[..., 0] - cx, points[..., 1] - cy, points[..., 2]
        ref = x[:, :1] if kind == "hand" else 0.0
        x, z = x * cos_y + (z * sin_y if kind != "pose" else 0.0), z * cos_y - (x - ref) * sin_y
        out.append(np.stack([cx + scale * (cos_r * x - sin_r * y),
                             cy + scale * (sin_r * x + cos_r * y), scale * z], axis=-1))
    return out


def _face(person: Participant, body: np.ndarray, head_roll: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    """Image landmarks `[T, 468, 3]` of the face: the template, swaying and tilting a little."""
    template = _face_template() * person.body_scale
    c, s = np.cos(head_roll)[:, None], np.sin(head_roll)[:, None]
    x, y = template[:, 0], template[:, 1]
    center = np.array(person.body_center) + person.body_scale * _FACE_CENTER + body
    face = np.stack([center[:, None, 0] + c * x - s * y, center[:, None, 1] + s * x + c * y,
                     np.broadcast_to(template[:, 2], (len(body), 468))], axis=-1)
    return _jitter(face, 0.0015, rng)


def _pose(person: Participant, body: np.ndarray, hand: np.ndarray,
          rng: np.random.Generator) -> np.ndarray:
    """Image landmarks `[T, 33, 3]` of the pose; the signing arm reaches for the hand."""
    b = person.body_scale
    pose = np.repeat(_POSE_TEMPLATE[None] * b, len(body), axis=0)
    pose[..., :2] += np.array(person.body_center) + body[:, None]
    shoulder, elbow, wrist, *fingers = _ARM[person.side]
    pose[:, wrist, :2] = hand[:, 0, :2]
    pose[:, fingers, :2] = hand[:, list(_POSE_HAND_POINTS), :2]
    pose[:, [wrist, *fingers], 2] = -0.75 * b
    # The elbow hangs below the middle of the forearm line, out to the signing side.
    pose[:, elbow, :2] = (pose[:, shoulder, :2] + 0.55 * (hand[:, 0, :2] - pose[:, shoulder, :2])
                          + b * np.array([0.06 * person.side, 0.15]))
    pose[:, elbow, 2] = -0.45 * b
    return _jitter(pose, 0.003, rng)


def _native_frames(face: np.ndarray, left: np.ndarray, pose: np.ndarray,
                   right: np.ndarray) -> np.ndarray:
    """Parts `[T, n, 3]` -> `[T, 1629]` float32 in native column order (all x, all y, all z).

    The result is column-major (each column contiguous), the layout a parquet writer wants.
    """
    points = np.concatenate([face, left, pose, right], axis=1).astype(np.float32)
    return np.ascontiguousarray(points.transpose(2, 1, 0)).reshape(-1, len(points)).T


def render_sequence(phrase: str, participant_id: int, rng: np.random.Generator,
                    difficulty: str | Difficulty = "default") -> tuple[np.ndarray, np.ndarray]:
    """One clip of `participant_id` fingerspelling `phrase`.

    Returns frames `[T, 1629]` float32 in `landmarks.raw_columns()` order, NaN where a part is
    undetected, and the character id shown in each frame (-1 in pauses and transitions), which
    is handy to check alignment. `difficulty` is a preset name (`DIFFICULTIES`) or the knobs.
    """
    d = difficulty_preset(difficulty)
    person = participant_profile(participant_id)
    params, offsets, labels = _timeline(phrase, person, rng, d)
    n = len(labels)
    if d.wrist_wobble:
        params[:, 15:18] += _wave(n, np.full(3, d.wrist_wobble), rng)
    sway = _wave(n, rng.uniform(0.003, 0.012, 3), rng)
    body = sway[:, :2] + np.linspace(0, 1, n)[:, None] * rng.uniform(-0.01, 0.01, 2)
    hand = _signing_hand(params, offsets, person, body, rng)
    pose = _pose(person, body, hand, rng)
    face = _face(person, body, 4 * sway[:, 2], rng)
    noise = person.noise * person.palm
    if d.noise_scale != 1.0:
        noise *= d.noise_scale
    moving = bool(d.distractor) and rng.random() < d.distractor
    idle = (_distractor_hand(person, body, d, rng, noise) if moving
            else _resting_hand(person, body, rng, noise))
    signing = _jitter(hand, noise, rng)
    signing[_bursts(n, person.missing_rate * d.missing_scale, rng, d.missing_burst)] = np.nan
    if d.occlusion:
        signing[_bursts(n, d.occlusion, rng, d.occlusion_burst,
                        max(1, d.occlusion_burst // 2))] = np.nan
    face[_bursts(n, 0.02 if rng.random() < 0.15 else 0.0, rng)] = np.nan  # rare face dropouts
    if d != DIFFICULTIES["default"]:  # (the default data never needs it)
        _keep_signing_hand_dominant(idle, signing)
    left, right = (signing, idle) if person.left_handed else (idle, signing)
    if d.camera_roll or d.camera_zoom or d.camera_yaw:
        face, left, pose, right = _camera([(face, "face"), (left, "hand"), (pose, "pose"),
                                           (right, "hand")], person, d, rng)
    return _native_frames(face, left, pose, right), labels


# ---------------------------------------------------------------------------------------------
# Phrases
# ---------------------------------------------------------------------------------------------

_PLACE_WORDS = (
    "maple", "cedar", "harbor", "willow", "sunset", "granite", "meadow", "river", "falcon",
    "orchard", "summit", "lakeview", "pine", "ridge", "canyon", "sparrow", "elm", "birch", "coral",
    "silver", "hollow", "prairie", "juniper", "highland", "chestnut", "quarry", "lantern", "mill",
    "brook", "stone", "aspen", "heron", "violet", "copper", "vista", "golden", "fox", "magnolia",
    "osprey", "dune", "glacier", "timber", "bluebell", "saddle", "clover", "thistle", "crescent",
    "beacon", "walnut", "kestrel",
)
_STREET_TYPES = ("street", "avenue", "road", "lane", "drive", "boulevard", "court", "way",
                 "place", "terrace", "circle", "trail", "parkway", "hill", "st", "ave", "rd",
                 "dr", "blvd", "ln")
_DIRECTIONS = ("north", "south", "east", "west", "n", "s", "e", "w", "ne", "sw")
_FIRST_NAMES = ("marta", "joel", "priya", "tomasz", "keiko", "dante", "ingrid", "omar", "lucia",
                "rafael", "nadia", "wendell", "ayla", "bruno", "celeste", "hamid", "greta", "luis",
                "mabel", "soren")
_LAST_NAMES = ("okafor", "lindqvist", "barrera", "whitfield", "nakamura", "castellano", "pruitt",
               "haddad", "kowalski", "delacroix", "mbeki", "fairbanks", "ostrowski", "quintero",
               "vance", "holloway", "achterberg", "sato", "mcallister", "brennan")
_TLDS = ("com", "org", "net", "io", "nl", "de", "pl", "fr", "co.uk", "edu", "info", "ca",
         "com.br", "it", "es")
_URL_PREFIXES = ("", "", "www.", "https://", "https://www.", "http://")

# Everyday sentences in the spirit of the supplemental set (lowercase, no punctuation). A few
# exceed the 31-character limit on purpose: the real file has such phrases and converters must
# skip them.
SUPPLEMENTAL_SENTENCES = (
    "the kettle is whistling again", "bring an umbrella just in case",
    "my cousin paints old boats", "the library closes at nine",
    "please water the tomato plants", "we missed the last train home",
    "the soup needs more pepper", "turn left after the bakery",
    "her bicycle has a flat tire", "the puppy chewed my slipper",
    "rain is expected by tonight", "he forgot his keys at work",
    "the museum opens on sunday", "a quiet walk along the shore",
    "they planted apple trees", "the meeting ran very late",
    "our team won the final match", "she reads a novel every week",
    "the candle burned all night", "fresh bread smells wonderful",
    "i lost my favorite blue scarf", "the printer is out of paper",
    "clouds drifted over the valley", "the children built a snowman",
    "call me when you arrive", "the owl watched from the barn",
    "we painted the fence green", "that movie made me laugh",
    "the river froze last winter", "a spider spun a huge web",
    "the garden gate squeaks", "the chef sliced the onions",
    "stars are bright in the desert", "he whistled a cheerful tune",
    "the old clock stopped at noon", "please close the window",
    "the market sells ripe mangoes", "a breeze cooled the porch",
    "the violin lesson starts soon", "we hiked to the top",
    "the bus was packed today", "grandma knits warm sweaters",
    "the fox slipped under the fence", "lemons are on sale today",
    "the kids raced down the hall", "snow covered every rooftop",
    "fold the towels neatly", "the parrot repeats every word",
    "the ferry leaves every hour", "a rainbow appeared after lunch",
    "my neighbor grows huge pumpkins", "the pilot announced a delay",
    "keep the receipt for later", "the lamp flickered twice",
    "we ate dinner on the balcony",
    "the bridge was closed for two weeks",
    "my phone battery is almost empty again",
    "a thunderstorm rolled through town",
    "the tired hikers rested by the waterfall",
    "coffee tastes better with good friends",
)


def _pick(rng: np.random.Generator, options) -> str:
    """One element of `options`, uniformly."""
    return options[int(rng.integers(len(options)))]


def _digits(rng: np.random.Generator, n: int, leading_zero: bool = True) -> str:
    """A string of `n` random digits."""
    first = int(rng.integers(0 if leading_zero else 1, 10))
    return str(first) + "".join(map(str, rng.integers(0, 10, n - 1)))


def _address(rng: np.random.Generator) -> str:
    """A street address, e.g. "271097 bayshore boulevard"."""
    words = [_digits(rng, int(rng.integers(1, 7)), leading_zero=False)]
    if rng.random() < 0.2:
        words.append(_pick(rng, _DIRECTIONS))
    words.append(_pick(rng, _PLACE_WORDS))
    if rng.random() < 0.25:
        words.append(_pick(rng, _PLACE_WORDS))
    if rng.random() < 0.85:
        words.append(_pick(rng, _STREET_TYPES))
    if rng.random() < 0.05:
        words.append("#" + _digits(rng, int(rng.integers(1, 4)), leading_zero=False))
    return " ".join(words)


def _phone(rng: np.random.Generator) -> str:
    """A phone number, e.g. "818-534-0702", "(212) 555-0170" or "+20-4703-88149"."""
    if rng.random() < 0.4:
        area, rest = _digits(rng, 3, False), f"{_digits(rng, 3)}-{_digits(rng, 4)}"
        return f"({area}) {rest}" if rng.random() < 0.15 else f"{area}-{rest}"
    groups = [_digits(rng, int(rng.integers(2, 6))) for _ in range(int(rng.integers(2, 5)))]
    return "+" + "-".join([_digits(rng, int(rng.integers(1, 4)), False), *groups])


def _url(rng: np.random.Generator) -> str:
    """A web address, handle or e-mail, e.g. "www.cedar-mill.nl/585685"."""
    host = _pick(rng, _PLACE_WORDS + _LAST_NAMES)
    host += _pick(rng, ("", "", _pick(rng, _PLACE_WORDS), "-" + _pick(rng, _PLACE_WORDS),
                        _digits(rng, int(rng.integers(2, 5)))))
    domain = f"{host}.{_pick(rng, _TLDS)}"
    kind = rng.random()
    if kind < 0.1:
        return f"{_pick(rng, _FIRST_NAMES)}_{_pick(rng, _LAST_NAMES)}@{domain}"
    if kind < 0.2:
        return f"{host}{_digits(rng, 4)}/{_pick(rng, _PLACE_WORDS + _FIRST_NAMES)}"
    path = _pick(rng, ("", "", "/" + _pick(rng, _PLACE_WORDS), "/" + _digits(rng, 6),
                       f"/{_pick(rng, _FIRST_NAMES)}_{_pick(rng, _PLACE_WORDS)}",
                       "/~" + _pick(rng, _FIRST_NAMES), f"/?id={_digits(rng, 3)}&p=2"))
    return _pick(rng, _URL_PREFIXES) + domain + path


def _name(rng: np.random.Generator) -> str:
    """A person's name, e.g. "marta okafor" (the real train set has some)."""
    return f"{_pick(rng, _FIRST_NAMES)} {_pick(rng, _LAST_NAMES)}"


_TRAIN_STYLES = ((_address, 0.35), (_phone, 0.25), (_url, 0.3), (_name, 0.1))


def train_phrase(rng: np.random.Generator) -> str:
    """A random train-style phrase of at most `vocab.MAX_PHRASE_LEN` characters."""
    makers, weights = zip(*_TRAIN_STYLES, strict=True)
    while True:
        phrase = makers[int(rng.choice(len(makers), p=weights))](rng)
        if len(phrase) <= vocab.MAX_PHRASE_LEN:
            return phrase


def supplemental_phrase(rng: np.random.Generator) -> str:
    """A sentence from the fixed pool, so many sequences share a phrase as in the real set."""
    return _pick(rng, SUPPLEMENTAL_SENTENCES)


_PHRASE_MAKERS = {TRAIN.code: train_phrase, SUPPLEMENTAL.code: supplemental_phrase}

# ---------------------------------------------------------------------------------------------
# Writing the folder
# ---------------------------------------------------------------------------------------------


def _participant_pool(seed: int, n_participants: int) -> np.ndarray:
    """The participant ids used by a folder (sorted)."""
    rng = np.random.default_rng([seed, _PARTICIPANT_STREAM])
    return np.sort(rng.choice(_MAX_PARTICIPANT_ID + 1, n_participants, replace=False))


def _file_id(seed: int, split: _Split, k: int) -> int:
    """Id of the k-th parquet file of `split`; train and supplemental use interleaved slots."""
    rng = np.random.default_rng([seed, _FILE_STREAM, split.code, k])
    return _FILE_ID_BASE + (2 * k + split.code) * _FILE_ID_SLOT + int(rng.integers(_FILE_ID_SLOT))


def _sequence(seed: int, split: _Split, index: int,
              participants: np.ndarray) -> tuple[np.random.Generator, int, int, str]:
    """Metadata of one sequence and the generator that goes on to render it.

    The stream depends only on (seed, split, index), so a sequence is the same whatever the
    number of sequences per file; ids use interleaved slots, so they are unique across splits.
    """
    rng = np.random.default_rng([seed, _SEQUENCE_STREAM, split.code, index])
    sequence_id = (_SEQUENCE_ID_BASE + (2 * index + split.code) * _SEQUENCE_ID_SLOT
                   + int(rng.integers(_SEQUENCE_ID_SLOT)))
    participant_id = int(participants[rng.integers(len(participants))])
    return rng, sequence_id, participant_id, _PHRASE_MAKERS[split.code](rng)


def _write_parquet(path: str, sequence_ids: list[int], frames: list[np.ndarray]) -> None:
    """Write sequences in the Kaggle parquet layout: index `sequence_id`, `frame`, 1,629 floats."""
    from asl_keras.data.kaggle import ArrowFile

    lengths = [len(f) for f in frames]
    index = pd.Index(np.repeat(np.asarray(sequence_ids, dtype=np.int64), lengths),
                     name="sequence_id")
    # Joined column-major, so pyarrow converts each column without a strided copy.
    values = np.concatenate([f.T for f in frames], axis=1).T
    table = pd.DataFrame(values, index=index, columns=landmarks.raw_columns(), copy=False)
    table.insert(0, "frame", np.concatenate([np.arange(n, dtype=np.int16) for n in lengths]))
    # Dictionary encoding never pays off for continuous values; trying it costs ~5x the time.
    with ArrowFile(path, "wb") as f:
        table.to_parquet(f, engine="pyarrow", use_dictionary=False)


def _write_split(out: str, split: _Split, n_sequences: int, per_file: int, seed: int,
                 participants: np.ndarray, difficulty: Difficulty) -> dict:
    """Render and write every parquet file of one split (one file in memory at a time)."""
    from asl_keras.runtime import tf

    tf.io.gfile.makedirs(os.path.join(out, split.folder))
    rows, files, n_frames = [], [], 0
    for k, first in enumerate(range(0, n_sequences, per_file)):
        file_id = _file_id(seed, split, k)
        rel_path = f"{split.folder}/{file_id}.parquet"
        ids, frames = [], []
        for index in range(first, min(first + per_file, n_sequences)):
            rng, sequence_id, participant_id, phrase = _sequence(seed, split, index, participants)
            frames.append(render_sequence(phrase, participant_id, rng, difficulty)[0])
            ids.append(sequence_id)
            rows.append((rel_path, file_id, sequence_id, participant_id, phrase))
        _write_parquet(os.path.join(out, rel_path), ids, frames)
        files.append(rel_path)
        n_frames += sum(len(f) for f in frames)
    metadata = pd.DataFrame(rows, columns=_METADATA_COLUMNS)
    with tf.io.gfile.GFile(os.path.join(out, split.csv_name), "w") as f:
        metadata.to_csv(f, index=False, lineterminator="\n")
    return {"sequences": n_sequences, "files": files, "frames": n_frames,
            "too_long": int((metadata["phrase"].str.len() > vocab.MAX_PHRASE_LEN).sum())}


def _read_manifest(out: str) -> dict | None:
    """The arguments a folder was generated with, or None if it has no readable manifest."""
    from asl_keras.runtime import tf

    try:
        with tf.io.gfile.GFile(os.path.join(out, _MANIFEST), "r") as f:
            return json.load(f)
    except (tf.errors.OpError, ValueError):
        return None


def _prepare_out_dir(out: str, manifest: dict, force: bool) -> None:
    """Create `out` with the manifest and the character map; refuse a non-empty folder made
    otherwise unless `force`.

    With `force` only the entries this generator writes are removed; other files stay.
    """
    from asl_keras.runtime import tf

    gfile = tf.io.gfile
    if gfile.isdir(out) and gfile.listdir(out) and _read_manifest(out) != manifest:
        if not force:
            raise FileExistsError(
                f"{out} is not empty and was not generated with these arguments "
                f"(see {_MANIFEST}); choose another folder or pass --force (force=True)")
        for path in [os.path.join(out, n) for n in (TRAIN.csv_name, SUPPLEMENTAL.csv_name,
                                                    _CHAR_MAP, _MANIFEST)]:
            if gfile.exists(path):
                gfile.remove(path)
        for path in [os.path.join(out, n) for n in (TRAIN.folder, SUPPLEMENTAL.folder)]:
            if gfile.isdir(path):
                gfile.rmtree(path)
    gfile.makedirs(out)
    # Written first, so an interrupted run can be resumed by repeating the same command.
    with gfile.GFile(os.path.join(out, _MANIFEST), "w") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with gfile.GFile(os.path.join(out, _CHAR_MAP), "wb") as f:
        f.write(resources.path(_CHAR_MAP).read_bytes())


def generate(out_dir, n_train: int, n_supplemental: int, *, sequences_per_file: int = 100,
             n_participants: int = 12, seed: int = 0, force: bool = False,
             difficulty: str = "default") -> dict:
    """Write a synthetic dataset in the Kaggle layout to `out_dir` and return a summary.

    `difficulty` names a preset of `DIFFICULTIES`. The summary holds the participant ids and,
    per split (`train`, `supplemental`), the number of sequences, the parquet files (relative
    paths), the total frames and how many phrases are longer than `vocab.MAX_PHRASE_LEN`.
    Raises FileExistsError if `out_dir` is non-empty and was not generated with the same
    arguments (the difficulty's name and knobs included), unless `force`.
    """
    if n_train < 0 or n_supplemental < 0:
        raise ValueError("sequence counts must be >= 0")
    if sequences_per_file < 1:
        raise ValueError("sequences_per_file must be >= 1")
    if not 1 <= n_participants <= _MAX_PARTICIPANT_ID + 1:
        raise ValueError(f"n_participants must be in 1..{_MAX_PARTICIPANT_ID + 1}")
    if seed < 0:
        raise ValueError("seed must be >= 0")
    if not isinstance(difficulty, str):
        raise ValueError(f"difficulty must be a preset name ({', '.join(DIFFICULTIES)})")
    preset = difficulty_preset(difficulty)
    out = os.fspath(out_dir)
    manifest = {"generator": "asl_keras.data.synthetic", "n_train": n_train,
                "n_supplemental": n_supplemental, "sequences_per_file": sequences_per_file,
                "n_participants": n_participants, "seed": seed}
    if difficulty != "default":  # default folders keep the manifest they always had
        manifest["difficulty"] = difficulty
        manifest["difficulty_knobs"] = asdict(preset)
    _prepare_out_dir(out, manifest, force)
    participants = _participant_pool(seed, n_participants)
    summary = {"out_dir": out, "seed": seed, "difficulty": difficulty,
               "participants": participants.tolist()}
    for name, split, count in (("train", TRAIN, n_train),
                               ("supplemental", SUPPLEMENTAL, n_supplemental)):
        summary[name] = _write_split(out, split, count, sequences_per_file, seed, participants,
                                     preset)
    return summary


def main(argv=None) -> int:
    """Command line: write a synthetic Kaggle-format folder and print a short summary."""
    parser = argparse.ArgumentParser(
        prog="python -m asl_keras.data.synthetic",
        description="Write synthetic ASL fingerspelling landmarks in the Kaggle layout.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--sequences", type=int, required=True, help="train sequences")
    parser.add_argument("--supplemental", type=int, default=0, help="supplemental sequences")
    parser.add_argument("--per-file", type=int, default=100, help="sequences per parquet file")
    parser.add_argument("--participants", type=int, default=12, help="number of signers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", choices=list(DIFFICULTIES), default="default",
                        help="preset of the generator's knobs (see DIFFICULTIES)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite a folder that holds other content")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        summary = generate(args.out, args.sequences, args.supplemental,
                           sequences_per_file=args.per_file, n_participants=args.participants,
                           seed=args.seed, force=args.force, difficulty=args.difficulty)
    except (FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {summary['out_dir']} in {time.perf_counter() - start:.1f} s "
          f"({len(summary['participants'])} participants, difficulty {args.difficulty})")
    for name in ("train", "supplemental"):
        s = summary[name]
        mean = s["frames"] / s["sequences"] if s["sequences"] else 0.0
        print(f"  {name}: {s['sequences']} sequences in {len(s['files'])} files, "
              f"{s['frames']} frames (mean {mean:.1f}), {s['too_long']} phrases over "
              f"{vocab.MAX_PHRASE_LEN} characters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
