"""Per-sequence preprocessing shared by training, evaluation and the exported TFLite graph.

Reference: 1st-place `data/ds_2.py` `Preprocessing` + `interpolate_or_pad`; its quirks:
docs/reference.md, 'Preprocessing'. Steps:
1. global normalisation per coordinate (x, y, z) with the mean and *population* std over every
   present landmark-frame of the sequence;
2. missing -> 0 (after normalisation, so "missing" equals the sequence mean);
3. to `max_len` frames: nearest-neighbour resampling (source index `floor(i * T / max_len)`)
   when `T >= max_len`, zero padding at the end otherwise; the mask marks real frames.

Deliberate difference (a fix): the reference treats only NaN as missing. Here every non-finite
value (NaN, +-inf) is missing, and a non-finite result of the normalisation (a constant
coordinate gives std 0; coordinates near the float32 limit overflow) becomes 0 as well, so the
exported model never propagates NaN. On finite inputs with non-zero spread the output is the
reference's (the parity fixtures check it to 1e-5).

Everything here is TensorFlow graph code: it runs inside `tf.data` and inside the serving
function that the TFLite converter traces, which is what keeps train and export identical.
"""

from __future__ import annotations

from asl_keras.landmarks import NATIVE_TO_MODEL, to_model_layout
from asl_keras.runtime import tf


def _sum_frames_landmarks(v: tf.Tensor) -> tf.Tensor:
    # Landmarks first, then frames: the float32 sum of ~50k values in one flat reduction is off
    # by ~1e-6 relative, which costs ~2e-5 after normalisation (the reference tolerance is 1e-5).
    return tf.reduce_sum(tf.reduce_sum(v, axis=1), axis=0)


def normalize(x: tf.Tensor) -> tf.Tensor:
    """`[T, N, 3]` raw coordinates -> globally normalised, missing points at 0."""
    x = tf.convert_to_tensor(x, tf.float32)
    present = tf.math.is_finite(x)
    count = _sum_frames_landmarks(tf.cast(present, tf.float32))
    mean = _sum_frames_landmarks(tf.where(present, x, 0.0)) / count
    centred = tf.where(present, x - mean, 0.0)
    std = tf.sqrt(_sum_frames_landmarks(tf.square(centred)) / count)
    out = centred / std
    return tf.where(present & tf.math.is_finite(out), out, 0.0)


def nearest_indices(src_len: tf.Tensor, dst_len) -> tf.Tensor:
    """Source frame of each of `dst_len` output frames: `floor(i * src_len / dst_len)`.

    Integer arithmetic gives PyTorch's `F.interpolate(mode="nearest")` indices exactly for
    every length met here (checked by the fixtures); augmentations use it too.
    int32 with `src_len = q * dst_len + r` split as `i * q + (i * r) // dst_len`: the same value
    without overflow (`i * r < dst_len^2`), and TFLite builtins have no int64 FLOOR_DIV.
    """
    src_len = tf.cast(src_len, tf.int32)
    dst_len = tf.cast(dst_len, tf.int32)
    i = tf.range(dst_len, dtype=tf.int32)
    return i * (src_len // dst_len) + i * (src_len % dst_len) // dst_len


def resample_or_pad(x: tf.Tensor, max_len: int, length=None) -> tuple[tf.Tensor, tf.Tensor]:
    """`[T, ...]` -> (`[max_len, ...]`, mask `[max_len]` float32).

    `length` (default T) is the number of real leading frames, for fixed-size buffers. One
    gather with no branch, so shapes stay static under XLA: output frame i takes source frame
    `floor(i*T/max_len)` when `T >= max_len`, else frame i, or an appended zero frame when
    `i >= T`.
    """
    rows = tf.shape(x)[0]
    t = rows if length is None else tf.cast(length, tf.int32)
    i = tf.range(max_len)
    src = tf.where(t >= max_len, nearest_indices(t, max_len), i)
    valid = src < t
    padded = tf.concat([x, tf.zeros_like(x[:1])], axis=0)
    out = tf.gather(padded, tf.where(valid, src, rows))
    return tf.ensure_shape(out, [max_len, *x.shape[1:]]), tf.cast(valid, tf.float32)


def frames_to_landmarks(frames: tf.Tensor, index=NATIVE_TO_MODEL) -> tf.Tensor:
    """Stored/served `[T, 390]` columns -> normalised `[T, 130, 3]` (before augmentation)."""
    return normalize(to_model_layout(tf.convert_to_tensor(frames, tf.float32), index))


def preprocess(frames: tf.Tensor, max_len: int, index=NATIVE_TO_MODEL):
    """Evaluation path: `[T, 390]` -> (`[max_len, 130, 3]`, mask `[max_len]`)."""
    return resample_or_pad(frames_to_landmarks(frames, index), max_len)
