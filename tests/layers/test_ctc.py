"""The CTC head's loss (the textbook CTC per character, safe on impossible clips) and its
decoding primitives (best path, prefix scores) against frame-by-frame numpy recursions."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from asl_keras import config, vocab
from asl_keras.layers import ctc
from asl_keras.layers.ctc import ctc_log_probs, ctc_loss_per_char
from asl_keras.models.recognizer import build_recognizer


def labels_for(*phrases):
    return np.stack([vocab.to_labels(vocab.encode(p)) for p in phrases])


def loss_and_gradient(labels, logits, mask, xla: bool):
    """The per-character CTC loss and its gradient by the logits; with `xla`, the path the
    compiled step takes, compiled with XLA."""

    @tf.function(jit_compile=xla)
    def both(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = ctc_loss_per_char(labels, x, mask, xla=xla)
        return loss, tape.gradient(loss, x)

    return [v.numpy() for v in both(tf.constant(logits))]


def test_fused_and_xla_paths_equal_the_textbook_loss_and_each_others_gradient():
    """Padding and repeated characters (a repeat needs a blank between): the fused kernel and
    the dense-label CTC that XLA compiles give the textbook forward recursion's loss per
    character, and the same gradient, to float32 rounding."""
    phrases = ["aab", "hello world", "zz", "a"]
    frames = [40, 31, 9, 1 + 2]
    labels = labels_for(*phrases)
    logits = 2.0 * np.random.default_rng(0).normal(
        size=(4, 40, vocab.CTC_BLANK + 1)).astype("float32")
    mask = (np.arange(40)[None] < np.array(frames)[:, None]).astype("float32")
    fused, fused_grad = loss_and_gradient(labels, logits, mask, xla=False)
    dense, dense_grad = loss_and_gradient(labels, logits, mask, xla=True)
    for b, (phrase, n) in enumerate(zip(phrases, frames, strict=True)):
        nonblank, blank, _ = textbook_prefix(ctc_log_probs(logits[b, :n]).numpy(),
                                             vocab.encode(phrase))
        textbook = -np.log(nonblank[-1] + blank[-1]) / len(phrase)
        np.testing.assert_allclose([fused[b], dense[b]], textbook, rtol=1e-5)
    np.testing.assert_allclose(dense, fused, rtol=1e-5)
    # element by element to 1e-5 of the largest: elements near zero carry the rounding of the
    # whole 40-frame recursion, which the two kernels sum in different orders
    np.testing.assert_allclose(dense_grad, fused_grad, rtol=0,
                               atol=1e-5 * np.abs(fused_grad).max())
    assert not dense_grad[2, 9:].any() and not fused_grad[2, 9:].any()  # padding: none


def test_clips_too_short_for_their_phrase_get_zero_loss_and_finite_gradients():
    labels = labels_for("abcdefghij", "ab")
    logits = tf.Variable(np.random.default_rng(1).normal(
        size=(2, 12, vocab.CTC_BLANK + 1)).astype("float32"))
    mask = np.ones((2, 12), "float32")  # 12 frames < 2 x 10 characters
    with tf.GradientTape() as tape:
        loss = ctc_loss_per_char(labels, logits, mask)
        total = tf.reduce_sum(loss)
    grad = tape.gradient(total, logits).numpy()
    assert loss.numpy()[0] == 0.0 and loss.numpy()[1] > 0
    assert np.isfinite(grad).all() and np.abs(grad[0]).max() == 0.0


def test_recognizer_mixes_ctc_into_its_loss_with_the_configured_weight():
    cfg = config.from_dict(config.Config, {"model": {
        "dim": 32, "blocks": 1, "kernel_size": 5, "decoder_layers": 1, "decoder_ffn": 32,
        "part_extractors": False, "backward_decoder": False, "confidence_head": False,
        "ctc_loss_weight": 0.25}})
    model = build_recognizer(cfg)
    rng = np.random.default_rng(2)
    batch = {"landmarks": rng.normal(size=(2, 40, 130, 3)).astype("float32"),
             "mask": np.ones((2, 40), "float32"), "labels": labels_for("abc", "de"),
             "score": np.ones(2, "float32")}
    out = model(batch)
    assert tuple(out["ctc_logits"].shape) == (2, 40, vocab.CTC_BLANK + 1)
    from asl_keras.layers.decoder import sequence_cross_entropy

    ce = sequence_cross_entropy(batch["labels"], out["logits"]).numpy()
    ctc = ctc_loss_per_char(batch["labels"], out["ctc_logits"], batch["mask"]).numpy()
    np.testing.assert_allclose(model.per_sample_loss(batch, out).numpy(),
                               0.75 * ce + 0.25 * ctc, rtol=1e-5)
    with pytest.raises(config.ConfigError, match="ctc_loss_weight"):
        config.from_dict(config.Model, {"ctc_loss_weight": 1.5}, "model")


# ---------------------------------------------------------------------------------------------
# Decoding primitives against the textbook recursions (numpy, one frame at a time)
# ---------------------------------------------------------------------------------------------


def textbook_prefix(log_probs: np.ndarray, prefix: list[int]):
    """Watanabe et al. 2017, Algorithm 2, frame by frame in probabilities: for `prefix` the
    per-frame `(nonblank, blank)` forward variables `[T]` and its prefix probability."""
    x, blank = np.exp(log_probs.astype(np.float64)), vocab.CTC_BLANK
    frames = len(x)
    nonblank, blanks = np.zeros(frames), np.cumprod(x[:, blank])
    probability, done = 1.0, []
    for c in prefix:
        new_nonblank, new_blank = np.zeros(frames), np.zeros(frames)
        # paths that read the prefix by frame t and may read c next
        phi = blanks + (0.0 if done and done[-1] == c else nonblank)
        new_nonblank[0] = 0.0 if done else x[0, c]
        probability = new_nonblank[0]
        for t in range(1, frames):
            new_nonblank[t] = (new_nonblank[t - 1] + phi[t - 1]) * x[t, c]
            new_blank[t] = (new_blank[t - 1] + new_nonblank[t - 1]) * x[t, blank]
            probability += phi[t - 1] * x[t, c]
        done.append(c)
        nonblank, blanks = new_nonblank, new_blank
    return nonblank, blanks, probability


def random_log_probs(batch: int, frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ctc_log_probs(2.0 * rng.normal(size=(batch, frames, ctc.CLASSES))).numpy()


def test_prefix_scores_and_states_equal_the_textbook_recursion():
    log_probs = random_log_probs(3, 14, seed=0)
    prefixes = [[3, 3, 5, 5], [7, 2, 2, 9], [1, 4, 1, 4]]  # repeats need a blank in between
    state = ctc.ctc_prefix_init(log_probs)
    for k in range(4):
        extended, end, phi = ctc.ctc_prefix_scores(state, log_probs)
        for b, prefix in enumerate(prefixes):
            nonblank, blank, _ = textbook_prefix(log_probs[b], prefix[:k])
            np.testing.assert_allclose(end[b], np.log(nonblank[-1] + blank[-1]), rtol=1e-5)
            for c in range(vocab.NUM_CHARS):
                expected = np.log(textbook_prefix(log_probs[b], prefix[:k] + [c])[2])
                np.testing.assert_allclose(extended[b, c], expected, rtol=1e-5)
        token = np.array([p[k] for p in prefixes], np.int32)
        state = ctc.ctc_prefix_advance(state, log_probs, extended, phi, token)
        for b, prefix in enumerate(prefixes):
            nonblank, blank, probability = textbook_prefix(log_probs[b], prefix[:k + 1])
            np.testing.assert_allclose(np.exp(state["nonblank"][b, 1:]), nonblank, rtol=1e-4,
                                       atol=1e-30)
            np.testing.assert_allclose(np.exp(state["blank"][b, 1:]), blank, rtol=1e-4,
                                       atol=1e-30)
            np.testing.assert_allclose(state["score"][b], np.log(probability), rtol=1e-5)
            assert state["last"][b] == prefix[k]


def test_padded_frames_change_no_prefix_score():
    """A clip padded with masked frames scores every prefix as at its own length."""
    log_probs = random_log_probs(1, 10, seed=1)
    mask = np.concatenate([np.ones((1, 10)), np.zeros((1, 6))], axis=1).astype("float32")
    padded = ctc_log_probs(np.concatenate([log_probs, np.zeros((1, 6, ctc.CLASSES))], axis=1),
                           mask)
    states = [ctc.ctc_prefix_init(lp) for lp in (log_probs, padded)]
    for token in (4, 4, 11):
        results = [ctc.ctc_prefix_scores(s, lp) for s, lp in zip(states, (log_probs, padded),
                                                                    strict=True)]
        (ext_a, end_a, _), (ext_b, end_b, _) = results
        np.testing.assert_allclose(ext_a, ext_b, rtol=1e-5)
        np.testing.assert_allclose(end_a, end_b, rtol=1e-5)
        states = [ctc.ctc_prefix_advance(s, lp, e, p, np.array([token], np.int32))
                  for s, lp, (e, _, p) in zip(states, (log_probs, padded), results,
                                               strict=True)]


def best_path(log_probs: np.ndarray, max_steps: int) -> list[int]:
    best = log_probs.argmax(-1)
    chars = [int(c) for i, c in enumerate(best)
             if c != vocab.CTC_BLANK and (i == 0 or c != best[i - 1])]
    return chars[:max_steps]


def test_greedy_ids_merge_repeats_drop_blanks_and_stop_at_max_steps():
    log_probs = random_log_probs(4, 30, seed=2)
    log_probs[1, :, vocab.CTC_BLANK] += 3.0  # mostly blanks: a short reading
    log_probs[2] = np.log(np.full(ctc.CLASSES, 1e-4))
    log_probs[2, :, vocab.CTC_BLANK] = 0.0  # blanks only: no character
    for max_steps in (5, 33):
        ids = ctc.ctc_greedy_ids(log_probs, max_steps).numpy()
        assert ids.shape == (4, max_steps + 1) and (ids[:, 0] == vocab.SOS).all()
        for b in range(4):
            chars = best_path(log_probs[b], max_steps)
            row = ids[b, 1:].tolist()
            assert row[:len(chars)] == chars
            if len(chars) < max_steps:
                assert row[len(chars)] == vocab.EOS and set(row[len(chars) + 1:]) <= {vocab.PAD}
    assert vocab.decode(ctc.ctc_greedy_ids(log_probs, 33)[2, 1:].numpy()) == ""
