"""The optional CTC auxiliary loss on the encoder output (not part of the 1st-place model).

Joint CTC/attention training (2nd and 11th place) gives the encoder a monotonic alignment
signal from the first steps; the attention decoder then finds the characters in the encoder
output much sooner. Labels are the decoder targets `[B, L]` (characters, EOS, PAD).
"""

from __future__ import annotations

import keras
from keras import ops

from asl_keras import vocab
from asl_keras.runtime import tf


def ctc_loss_per_char(labels, logits, frame_mask):
    """Per-sample CTC loss `[B]` divided by the phrase length (the scale of a token CE).

    `logits [B, T, 60]` (blank = `vocab.CTC_BLANK`), `frame_mask [B, T]`. A clip with fewer
    than two frames per character cannot be aligned reliably (the field filtered such clips
    for CTC); it gets loss 0 (and no gradient) instead of an infinite loss with NaN gradients.
    """
    labels = ops.cast(labels, "int32")
    is_char = ops.cast(labels < vocab.NUM_CHARS, "int32")
    # characters come first, so the length is the count of leading ids < NUM_CHARS
    length = ops.sum(ops.cumprod(is_char, axis=1), axis=1)
    frames = ops.maximum(ops.cast(ops.sum(ops.cast(frame_mask, "float32"), axis=1), "int32"), 1)
    feasible = frames >= 2 * length
    # an infeasible clip is scored as a one-character phrase (always alignable, and the fused
    # kernel rejects empty labels), then weighted by 0
    length = ops.where(feasible, length, 1)
    targets = ops.where(labels < vocab.NUM_CHARS, labels, 0)
    if keras.backend.backend() == "tensorflow":
        loss = sparse_ctc_loss(targets, length, logits, frames)
    else:  # other backends: Keras' own CTC (dense labels; the same loss)
        loss = ops.ctc_loss(targets, ops.cast(logits, "float32"), length, frames,
                            mask_index=vocab.CTC_BLANK)
    per_char = loss / ops.cast(ops.maximum(length, 1), "float32")
    return ops.where(feasible, per_char, 0.0)


def sparse_ctc_loss(targets, length, logits, frames):
    """Per-sample CTC loss `[B]` through TensorFlow's fused kernel: `targets [B, L]` of which the
    first `length [B]` count, `logits [B, T, 60]`, `frames [B]` real frames.

    TensorFlow on purpose: `keras.ops.ctc_loss` passes dense labels, which selects TF's
    graph-level CTC (about 10x slower on CPU than the fused kernel used for sparse labels).
    """
    keep = ops.arange(ops.shape(targets)[1])[None, :] < length[:, None]
    sparse = tf.sparse.from_dense(ops.where(keep, targets + 1, 0))  # +1: 0 is "absent" here
    sparse = tf.SparseTensor(sparse.indices, sparse.values - 1, sparse.dense_shape)
    return tf.nn.ctc_loss(sparse, ops.cast(logits, "float32"), None, frames,
                          logits_time_major=False, blank_index=vocab.CTC_BLANK)
