"""The optional CTC head's loss and decoding primitives (not part of the 1st-place model).

Joint CTC/attention training (2nd and 11th place) gives the encoder a monotonic alignment
signal from the first steps; the attention decoder then finds the characters in the encoder
output much sooner. Labels are the decoder targets `[B, L]` (characters, EOS, PAD).

Decoding (used by `asl_keras.decoding`, in Keras and in the TFLite graph alike):
- `ctc_log_probs`: per-frame log-probabilities `[B, T, 60]`; padded frames become a certain
  blank, which leaves every prefix probability as it was at the last real frame, so a padded
  batch scores exactly like each clip at its own length.
- `ctc_greedy_ids`: best class per frame, repeats merged, blanks dropped (no loop).
- `ctc_prefix_init` / `ctc_prefix_scores` / `ctc_prefix_advance`: the CTC prefix score of
  Watanabe et al. 2017 ("Hybrid CTC/Attention Architecture for End-to-End Speech
  Recognition", Algorithm 2), for every candidate character at once, as joint decoding needs it
  at each step. docs/decoding.md derives the vectorised form used here: the per-frame forward
  recursion of the chosen prefix is a first-order linear recurrence, solved for all frames at
  once as a masked `[T, T]` log-sum-exp, so the decoder loop needs no inner loop over frames.
"""

from __future__ import annotations

import keras
from keras import ops

from asl_keras import vocab
from asl_keras.runtime import tf

CLASSES = vocab.CTC_BLANK + 1  # 60: the 59 characters and the blank
# log-probability of an impossible event. Finite, so that sums and differences of impossible
# terms never give inf - inf = NaN; far below any real log-probability (a real prefix can reach
# -1e4 over a few hundred frames), and 384 of them still fit in float32.
IMPOSSIBLE = -1e30


def ctc_loss_per_char(labels, logits, frame_mask, xla: bool = False):
    """Per-sample CTC loss `[B]` divided by the phrase length (the scale of a token CE).

    `logits [B, T, 60]` (blank = `vocab.CTC_BLANK`), `frame_mask [B, T]`. A clip with fewer
    than two frames per character cannot be aligned reliably (the field filtered such clips
    for CTC); it gets loss 0 (and no gradient) instead of an infinite loss with NaN gradients.
    `xla`: the loss is compiled with XLA (a TPU, `train.jit_compile`), which TensorFlow's
    fused CTC kernel does not support; the dense-label CTC is used instead (the same loss).
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
    if keras.backend.backend() == "tensorflow" and not xla:
        loss = sparse_ctc_loss(targets, length, logits, frames)
    else:  # Keras' own CTC on dense labels: XLA compiles it, and other backends have it
        loss = ops.ctc_loss(targets, ops.cast(logits, "float32"), length, frames,
                            mask_index=vocab.CTC_BLANK)
    per_char = loss / ops.cast(ops.maximum(length, 1), "float32")
    return ops.where(feasible, per_char, 0.0)


def sparse_ctc_loss(targets, length, logits, frames):
    """Per-sample CTC loss `[B]` through TensorFlow's fused kernel: `targets [B, L]` of which the
    first `length [B]` count, `logits [B, T, 60]`, `frames [B]` real frames.

    TensorFlow on purpose: `keras.ops.ctc_loss` passes dense labels, which selects TF's
    graph-level CTC, slower without XLA than the fused kernel used for sparse labels
    (`python -m asl_keras.bench ctc` times both). The fused kernel has no XLA kernel.
    """
    keep = ops.arange(ops.shape(targets)[1])[None, :] < length[:, None]
    sparse = tf.sparse.from_dense(ops.where(keep, targets + 1, 0))  # +1: 0 is "absent" here
    sparse = tf.SparseTensor(sparse.indices, sparse.values - 1, sparse.dense_shape)
    return tf.nn.ctc_loss(sparse, ops.cast(logits, "float32"), None, frames,
                          logits_time_major=False, blank_index=vocab.CTC_BLANK)


def logsumexp(x, axis: int):
    """log(sum(exp(x))) along `axis`, stabilised by the maximum (finite for rows of
    IMPOSSIBLE values). Not `ops.logsumexp`: TensorFlow's adds an `IsFinite` test that TFLite
    builtins lack."""
    top = ops.max(x, axis=axis, keepdims=True)
    return ops.squeeze(top, axis) + ops.log(ops.sum(ops.exp(x - top), axis=axis))


def ctc_log_probs(logits, frame_mask=None):
    """float32 log-probabilities `[B, T, 60]` of CTC logits `[B, T, 60]`; frames outside
    `frame_mask [B, T]` (if given) are a certain blank."""
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    if frame_mask is None:
        return log_probs
    blank = ops.where(ops.arange(CLASSES) == vocab.CTC_BLANK, 0.0, IMPOSSIBLE)
    return ops.where(ops.cast(frame_mask, "bool")[..., None], log_probs, blank)


def ctc_greedy_ids(log_probs, max_steps: int = vocab.LABEL_LEN):
    """Best-path decoding of `log_probs [B, T, 60]`: the best class of every frame, repeats
    merged, blanks dropped; the first `max_steps` characters are kept.

    Returns int32 ids `[B, max_steps + 1]` in the attention decoder's layout (SOS, the
    characters, EOS, then PAD), so every decoding mode's output reads the same way.
    """
    # top_k, not argmax: see `decoder.greedy_decode`
    best = ops.cast(ops.top_k(log_probs, 1)[1][..., 0], "int32")  # [B, T]
    previous = ops.pad(best[:, :-1], [[0, 0], [1, 0]], constant_values=vocab.CTC_BLANK)
    keep = ops.logical_and(best != vocab.CTC_BLANK, best != previous)
    slot = ops.cumsum(ops.cast(keep, "int32"), axis=1) - 1  # output position of a kept frame
    positions = ops.arange(max_steps, dtype="int32")
    hit = ops.logical_and(keep[:, :, None], slot[:, :, None] == positions)  # [B, T, L]
    chars = ops.sum(ops.where(hit, best[:, :, None], 0), axis=1)
    count = ops.sum(ops.cast(keep, "int32"), axis=1)[:, None]
    ids = ops.where(positions < count, chars, ops.where(positions == count, vocab.EOS,
                                                         vocab.PAD))
    sos = ops.full((ops.shape(ids)[0], 1), vocab.SOS, "int32")
    return ops.concatenate([sos, ops.cast(ids, "int32")], axis=1)


def ctc_prefix_init(log_probs):
    """Prefix state of the empty prefix for `log_probs [B, T, 60]`.

    A dict of `nonblank`, `blank` (float32 `[B, T + 1]`: log-probability that frames up to t
    read the prefix, ending in its last character or in a blank; index 0 is the virtual frame
    before the first, index t + 1 frame t), `score` (`[B]`, log-probability of all
    continuations of the prefix, 0 for the empty one) and `last` (int32 `[B]`, its last
    character, -1 for none).
    """
    batch = ops.shape(log_probs)[0]
    blank = ops.cumsum(log_probs[..., vocab.CTC_BLANK], axis=1)
    zero = ops.zeros((batch, 1), "float32")
    return {"nonblank": ops.full(ops.shape(ops.concatenate([zero, blank], 1)), IMPOSSIBLE),
            "blank": ops.concatenate([zero, blank], axis=1),
            "score": ops.zeros((batch,), "float32"),
            "last": ops.full((batch,), -1, "int32")}


def ctc_prefix_scores(state, log_probs):
    """Prefix scores of every one-character extension of the state's prefix g.

    Returns `(extended [B, 59], end [B], phi [B, T, 59])`: `extended[:, c]` is the
    log-probability of all label sequences that start with g + c, `end` that of g itself being
    the whole sequence, and `phi` the per-frame term `ctc_prefix_advance` needs (frames -1 to
    T - 2: paths that read g by then and can read c next; a repeated character needs a blank
    in between).
    """
    chars = ops.arange(vocab.NUM_CHARS, dtype="int32")
    repeated = (state["last"][:, None] == chars)[:, None, :]  # [B, 1, 59]
    nonblank = ops.where(repeated, IMPOSSIBLE, state["nonblank"][:, :-1, None])
    phi = ops.logaddexp(state["blank"][:, :-1, None], nonblank)
    extended = logsumexp(phi + log_probs[..., :vocab.NUM_CHARS], axis=1)
    end = ops.logaddexp(state["nonblank"][:, -1], state["blank"][:, -1])
    return extended, end, phi


def _first_order(inputs, log_gain):
    """Solve `r[t] = gain[t] * (r[t - 1] + input[t - 1])`, `r[-1] = 0`, in log space for all
    frames at once: `r[t] = sum_{s <= t} input[s - 1] * prod_{u = s..t} gain[u]`.

    `inputs [B, T]` (frames -1 .. T - 2), `log_gain [B, T + 1]` cumulative log gains (index j:
    frames before j). Returns `[B, T + 1]` with IMPOSSIBLE at index 0 (frame -1).
    """
    frames = ops.shape(inputs)[1]
    t = ops.arange(frames)
    earlier = (t[None, :] <= t[:, None])[None]  # [1, t, s]: s <= t
    terms = log_gain[:, 1:, None] + (inputs - log_gain[:, :-1])[:, None, :]
    solved = logsumexp(ops.where(earlier, terms, IMPOSSIBLE), axis=2)
    return ops.concatenate([ops.full(ops.shape(solved[:, :1]), IMPOSSIBLE), solved], axis=1)


def ctc_prefix_advance(state, log_probs, extended, phi, token):
    """Prefix state of g + `token` (int32 `[B]`) from g's state and `ctc_prefix_scores`.

    Rows whose token is not a character (EOS, PAD) get a finite state of no meaning; the
    decoding loop never reads it.
    """
    char = ops.clip(token, 0, vocab.NUM_CHARS - 1)
    pick = ops.one_hot(char, vocab.NUM_CHARS)  # [B, 59]
    inputs = ops.sum(phi * pick[:, None, :], axis=2)
    gain = ops.sum(log_probs[..., :vocab.NUM_CHARS] * pick[:, None, :], axis=2)
    zero = ops.zeros_like(gain[:, :1])
    nonblank = _first_order(inputs, ops.concatenate([zero, ops.cumsum(gain, axis=1)], 1))
    blank_gain = ops.cumsum(log_probs[..., vocab.CTC_BLANK], axis=1)
    blank = _first_order(nonblank[:, :-1], ops.concatenate([zero, blank_gain], axis=1))
    return {"nonblank": nonblank, "blank": blank,
            "score": ops.sum(extended * pick, axis=1), "last": ops.cast(char, "int32")}
