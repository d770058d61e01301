"""The 1st-place training augmentations as pure, stateless, static-shape TF functions.

A *sample* is a dict of fixed-shape tensors:
  x         [L, 130, 3] float32  normalised landmarks, missing = 0, frames >= n are 0
  n         int32                number of real frames (<= L, the buffer length)
  tokens    [32] int32           character ids, PAD after n_tokens
  n_tokens  int32
  score     float32              round-1 out-of-fold score (confidence-head target)
Every augmentation is `(sample, seed, cfg) -> sample` with a stateless seed `[2]`, so a run is
reproducible and each one can be tested and drawn alone. Time-changing augmentations are index
maps (output frame -> source frame or "zero frame") applied with one gather, which keeps shapes
static for XLA/TPU. When an augmentation would make the sequence longer than the buffer, the
result is nearest-squeezed into the buffer; the final resample to `max_len` squeezes anyway, and
the default buffer (1024) only binds for sequences longer than 512 frames resampled x2.

The reference's recipe in full: docs/reference.md, 'Augmentations'. Decisions on its quirks:
- FingersDrop probability checked twice in the reference: we keep the *effective* rate
  (configs set p = 0.75^2 = 0.5625) and its 12 finger draws with replacement (the `(2, 6)`
  shape quirk): this is what the winning model was trained with.
- SpatialAffine rotates about (0, 0), the sequence mean after normalisation (the reference's
  unused `center_xy`): kept. Fixed: missing (all-zero) points stay zero instead of being moved
  by scale/shift, so "missing" keeps meaning 0 for the model's part normalisation.
- PoseDrop2's four variants act on the reference's real pose order (one drops the left body
  side rather than an arm segment): kept as trained.
- SpatialMask is a no-op in the reference: omitted (identical behaviour).
- CutMix partners come from the same participant, drawn from the shuffled stream rather than
  the whole dataset (see `pipeline.py`); the phrase/frames cut and score mixing are the
  reference's.
"""

from __future__ import annotations

import math

import numpy as np

from asl_keras import config, landmarks, vocab
from asl_keras.runtime import tf

TOKEN_LEN = vocab.LABEL_LEN - 1  # 32 characters kept, then EOS


# ------------------------------------------------------------------ random helpers


def split(seed, n: int) -> list[tf.Tensor]:
    """`n` independent stateless seeds from one."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, n))


def uniform(seed, lo=0.0, hi=1.0, shape=()) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed, lo, hi)


def randint(seed, lo: int, hi: int, shape=()) -> tf.Tensor:
    """Integers in the inclusive range [lo, hi]."""
    return tf.random.stateless_uniform(shape, seed, lo, hi + 1, dtype=tf.int32)


def fires(seed, p: float) -> tf.Tensor:
    """True with probability p (the reference's `random() < p`)."""
    return uniform(seed) < p


def maybe(fn, p: float, allowed=True):
    """Apply `fn(sample, seed)` with probability p (never where `allowed` is False)."""
    def apply(sample, seed):
        s_p, s_fn = split(seed, 2)
        return tf.cond(fires(s_p, p) & allowed, lambda: fn(sample, s_fn), lambda: sample)
    return apply


# ------------------------------------------------------------------ time index maps


def _buffer_len(sample) -> int:
    return sample["x"].shape[0]


def squeezed_positions(desired, buffer_len: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Positions in a `desired`-frame virtual sequence that fill the buffer, and their count.

    Identity when it fits; nearest-neighbour squeeze into `buffer_len` frames otherwise.
    """
    n = tf.minimum(desired, buffer_len)
    j = tf.range(buffer_len)
    return j * desired // tf.maximum(n, 1), n


def retime(sample, src, n):
    """New sample whose frame j is old frame `src[j]` (zero frame if src < 0 or j >= n)."""
    length = _buffer_len(sample)
    valid = (src >= 0) & (src < sample["n"]) & (tf.range(length) < n)
    padded = tf.concat([sample["x"], tf.zeros_like(sample["x"][:1])], 0)
    return {**sample, "x": tf.gather(padded, tf.where(valid, src, length)), "n": n}


def resample(sample, seed, cfg: config.Resample):
    """Nearest resampling of the whole sequence to `max(int(n * rate), 1)` frames."""
    n = sample["n"]
    rate = uniform(seed, *cfg.rate)
    desired = tf.maximum(tf.cast(tf.cast(n, tf.float32) * rate, tf.int32), 1)
    v, new_n = squeezed_positions(desired, _buffer_len(sample))
    return retime(sample, v * n // desired, new_n)


def dynamic_resample(sample, seed, cfg: config.DynamicResample):
    """`torch.chunk` the sequence into up to w chunks, resample each by its own rate."""
    s_w, s_r = split(seed, 2)
    n = sample["n"]
    w = randint(s_w, *cfg.windows)
    size = (n + w - 1) // w  # torch.chunk: chunks of ceil(n / w), the last shorter
    k = tf.range(cfg.windows[1])
    start = k * size
    length = tf.clip_by_value(n - start, 0, size)
    rates = uniform(s_r, *cfg.rate, shape=[cfg.windows[1]])
    new_len = tf.where(length > 0, tf.maximum(
        tf.cast(tf.cast(length, tf.float32) * rates, tf.int32), 1), 0)
    ends = tf.cumsum(new_len)
    v, new_n = squeezed_positions(ends[-1], _buffer_len(sample))
    chunk = tf.minimum(tf.searchsorted(ends, v, side="right"), cfg.windows[1] - 1)
    offset = v - (tf.gather(ends, chunk) - tf.gather(new_len, chunk))
    src = tf.gather(start, chunk) + offset * tf.gather(length, chunk) // tf.maximum(
        tf.gather(new_len, chunk), 1)
    return retime(sample, src, new_n)


def time_shift(sample, seed, cfg: config.TimeShift):
    """s > 0: prepend s zero frames; -n+2 < s < 0: drop the first |s| frames."""
    n = sample["n"]
    s = randint(seed, *cfg.shift)
    length = _buffer_len(sample)

    def prepend():
        v, new_n = squeezed_positions(n + s, length)
        return retime(sample, v - s, new_n)

    def drop():
        return retime(sample, tf.range(length) - s, n + s)

    return tf.case([(s > 0, prepend), ((s < 0) & (s > 2 - n), drop)], default=lambda: sample)


def cutmix(sample, partner, seed):
    """Join the tail of one sequence to the head of the other (frames and phrase, same ratio).

    c ~ U(0, 1); cuts `clip(round(len * c), 1, len - 1)` per sequence. With probability 0.5
    tail(partner) ++ head(self) and score `c*self + (1-c)*partner`, else tail(self) ++
    head(partner) and `c*partner + (1-c)*self`.
    """
    s_c, s_b = split(seed, 2)
    c = uniform(s_c)

    def cut(n):
        return tf.minimum(tf.maximum(tf.cast(tf.round(tf.cast(n, tf.float32) * c), tf.int32), 1),
                          n - 1)

    partner_first = fires(s_b, 0.5)
    first, second = (tf.nest.map_structure(lambda a, b: tf.where(partner_first, a, b), u, v)
                     for u, v in ((partner, sample), (sample, partner)))
    f_cut, s_cut = cut(first["n"]), cut(second["n"])
    f_tcut, s_tcut = cut(first["n_tokens"]), cut(second["n_tokens"])

    length = _buffer_len(sample)
    tail = first["n"] - f_cut
    v, new_n = squeezed_positions(tail + s_cut, length)
    src = tf.where(v < tail, f_cut + v, length + v - tail)
    both = tf.concat([first["x"], second["x"], tf.zeros_like(sample["x"][:1])], 0)
    x = tf.gather(both, tf.where(tf.range(length) < new_n, src, 2 * length))

    t_tail = first["n_tokens"] - f_tcut
    j = tf.range(TOKEN_LEN)
    t_src = tf.where(j < t_tail, f_tcut + j, TOKEN_LEN + j - t_tail)
    n_tok = tf.minimum(t_tail + s_tcut, TOKEN_LEN)
    tok = tf.gather(tf.concat([first["tokens"], second["tokens"], [vocab.PAD]], 0),
                    tf.where(j < n_tok, t_src, 2 * TOKEN_LEN))
    score = tf.where(partner_first, c * sample["score"] + (1 - c) * partner["score"],
                     c * partner["score"] + (1 - c) * sample["score"])
    return {"x": x, "n": new_n, "tokens": tok, "n_tokens": n_tok, "score": score}


# ------------------------------------------------------------------ space


def flip(sample, seed=None):
    """Mirror: x -> -x and swap left/right landmarks (hands, eyes, body sides)."""
    x = tf.gather(sample["x"], landmarks.MIRROR, axis=1) * tf.constant([-1.0, 1.0, 1.0])
    return {**sample, "x": x}


def affine(sample, seed, cfg: config.Affine):
    """Scale -> shear (x or y) -> rotate about (0, 0) -> shift, on x and y; missing stays 0."""
    s_scale, s_shear, s_axis, s_deg, s_shift = split(seed, 5)
    scale = uniform(s_scale, *cfg.scale)
    shear = uniform(s_shear, *cfg.shear)
    on_x = fires(s_axis, 0.5)
    sx, sy = tf.where(on_x, shear, 0.0), tf.where(on_x, 0.0, shear)
    rad = uniform(s_deg, *cfg.degrees) * (math.pi / 180.0)
    c, s = tf.cos(rad), tf.sin(rad)
    m = tf.reshape(tf.stack([1.0, sx, sy, 1.0]), [2, 2]) @ tf.reshape(tf.stack([c, s, -s, c]),
                                                                       [2, 2])
    xy = scale * tf.tensordot(sample["x"][..., :2], m, axes=1) + uniform(s_shift, *cfg.shift)
    present = tf.reduce_any(sample["x"] != 0, axis=-1, keepdims=True)
    x = tf.where(present, tf.concat([xy, sample["x"][..., 2:]], -1), 0.0)
    return {**sample, "x": x}


def _window(seed, n, fraction_lo, fraction_hi, length_buf):
    """Frames `[off, off + size)` with size `int(n*U(lo, hi))`, off `int(U*clip(n-size,1,n))`."""
    s_len, s_off = split(seed, 2)
    nf = tf.cast(n, tf.float32)
    size = tf.cast(nf * uniform(s_len, fraction_lo, fraction_hi), tf.int32)
    room = tf.cast(tf.clip_by_value(n - size, 1, tf.maximum(n, 1)), tf.float32)
    off = tf.cast(uniform(s_off) * room, tf.int32)
    j = tf.range(length_buf)
    return (j >= off) & (j < off + size) & (j < n)


def _finger_landmarks() -> np.ndarray:
    """[10, 130] bool: finger f (left hand 0-4, right hand 5-9) -> its 4 landmarks."""
    table = np.zeros((10, landmarks.NUM_LANDMARKS), bool)
    for f in range(10):
        hand = landmarks.LEFT_HAND_IDX if f < 5 else landmarks.RIGHT_HAND_IDX
        table[f, hand[list(landmarks.FINGERS[f % 5])]] = True
    return table


FINGER_TABLE = _finger_landmarks()


def fingers_drop(sample, seed, cfg: config.FingersDrop):
    """In each of `windows` random windows, zero `draws` random fingers (with replacement)."""
    drop = tf.zeros([_buffer_len(sample), landmarks.NUM_LANDMARKS], tf.bool)
    for s in split(seed, cfg.windows):
        s_win, s_f = split(s, 2)
        frames = _window(s_win, sample["n"], *cfg.length, _buffer_len(sample))
        fingers = randint(s_f, 0, 9, shape=[cfg.draws])
        points = tf.reduce_any(tf.gather(tf.constant(FINGER_TABLE), fingers), axis=0)
        drop |= frames[:, None] & points[None, :]
    return {**sample, "x": tf.where(drop[..., None], 0.0, sample["x"])}


def _pose_variants() -> np.ndarray:
    """The reference's 4 PoseDrop2 variants as [4, 130] masks, on the real pose order."""
    pose = landmarks.POSE_IDX
    variants = np.zeros((4, landmarks.NUM_LANDMARKS), bool)
    variants[0, pose] = True  # all 12
    variants[1, pose[2:]] = True  # all but pose_12, 14
    variants[2, pose[4:]] = True  # all but pose_12, 14, 16, 18
    variants[3, pose[6:]] = True  # pose_11..21: the other body side
    return variants


POSE_VARIANTS = _pose_variants()


def part_drop(sample, seed, cfg: config.PartDrop):
    """At most one of: a pose-drop variant, the whole face (76 points), both hands."""
    s_u, s_v = split(seed, 2)
    u = uniform(s_u)
    face = np.zeros(landmarks.NUM_LANDMARKS, bool)
    face[landmarks.FACE_IDX] = True
    hands = np.zeros(landmarks.NUM_LANDMARKS, bool)
    hands[landmarks.HAND_IDX] = True
    pose = tf.gather(tf.constant(POSE_VARIANTS), randint(s_v, 0, 3))
    none = tf.zeros(landmarks.NUM_LANDMARKS, tf.bool)
    drop = tf.where(u < cfg.pose, pose, tf.where(
        u < cfg.pose + cfg.face, tf.constant(face),
        tf.where(u < cfg.pose + cfg.face + cfg.hands, tf.constant(hands), none)))
    return {**sample, "x": tf.where(drop[None, :, None], 0.0, sample["x"])}


def temporal_mask(sample, seed, cfg: config.TemporalMask):
    """One variant, uniformly: `count` windows of `U(lo, hi) * n` frames set to 0."""
    variants = [config.TemporalMask.parse(v) for v in cfg.variants]
    s_v, *s_masks = split(seed, 1 + max(c for c, _, _ in variants))
    k = randint(s_v, 0, len(variants) - 1)
    count = tf.gather([c for c, _, _ in variants], k)
    lo = tf.gather([lo for _, lo, _ in variants], k)
    hi = tf.gather([hi for _, _, hi in variants], k)
    drop = tf.zeros([_buffer_len(sample)], tf.bool)
    for i, s in enumerate(s_masks):
        drop |= _window(s, sample["n"], lo, hi, _buffer_len(sample)) & (i < count)
    return {**sample, "x": tf.where(drop[:, None, None], 0.0, sample["x"])}


# ------------------------------------------------------------------ tokens


def labels(tokens, n_tokens) -> tf.Tensor:
    """Decoder targets `[33]`: the characters, EOS, then PAD (as `vocab.to_labels`)."""
    j = tf.range(vocab.LABEL_LEN)
    padded = tf.concat([tokens, [vocab.PAD]], 0)
    return tf.where(j < n_tokens, padded, tf.where(j == n_tokens, vocab.EOS, vocab.PAD))


# ------------------------------------------------------------------ recipe


def recipe(cfg: config.Augment):
    """The ordered `train_aug` of the config as a list of `(name, fn(sample, seed))`."""
    steps = [
        ("resample", cfg.resample.p, lambda s, k: resample(s, k, cfg.resample)),
        ("dynamic_resample", cfg.dynamic_resample.p,
         lambda s, k: dynamic_resample(s, k, cfg.dynamic_resample)),
        ("time_shift", cfg.time_shift.p, lambda s, k: time_shift(s, k, cfg.time_shift)),
        ("affine", cfg.affine.p, lambda s, k: affine(s, k, cfg.affine)),
        ("fingers_drop", cfg.fingers_drop.p, lambda s, k: fingers_drop(s, k, cfg.fingers_drop)),
        ("part_drop", 1.0, lambda s, k: part_drop(s, k, cfg.part_drop)),
        ("temporal_mask", cfg.temporal_mask.p,
         lambda s, k: temporal_mask(s, k, cfg.temporal_mask)),
    ]
    return [(name, maybe(fn, p)) for name, p, fn in steps if p > 0]


def augment(sample, partner, seed, cfg: config.Augment, has_partner=True):
    """flip(self) -> CutMix(self, partner) -> the recipe.

    `partner=None` or `has_partner=False` (a tensor is fine) means no CutMix for this sample.
    """
    s_flip, s_cut, s_recipe = split(seed, 3)
    if cfg.flip > 0:
        sample = maybe(flip, cfg.flip)(sample, s_flip)
    if partner is not None and cfg.cutmix > 0:
        sample = maybe(lambda s, k: cutmix(s, partner, k), cfg.cutmix, has_partner)(sample,
                                                                                    s_cut)
    steps = recipe(cfg)
    for (_, fn), s in zip(steps, split(s_recipe, max(len(steps), 1)), strict=False):
        sample = fn(sample, s)
    return sample
