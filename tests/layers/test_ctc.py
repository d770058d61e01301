"""The CTC auxiliary loss: equals the textbook CTC per character, safe on impossible clips."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from asl_keras import config, vocab
from asl_keras.layers.ctc import ctc_loss_per_char
from asl_keras.models.recognizer import build_recognizer


def labels_for(*phrases):
    return np.stack([vocab.to_labels(vocab.encode(p)) for p in phrases])


def test_matches_dense_ctc_divided_by_phrase_length():
    rng = np.random.default_rng(0)
    labels = labels_for("abc", "hello world", "a")
    logits = rng.normal(size=(3, 40, vocab.CTC_BLANK + 1)).astype("float32")
    mask = np.ones((3, 40), "float32")
    mask[2, 30:] = 0
    ours = ctc_loss_per_char(labels, logits, mask).numpy()
    lengths = np.array([3, 11, 1])
    dense = ops.ctc_loss(np.where(labels < vocab.NUM_CHARS, labels, 0), logits, lengths,
                         mask.sum(1).astype("int32"), mask_index=vocab.CTC_BLANK).numpy()
    np.testing.assert_allclose(ours, dense / lengths, rtol=1e-4)


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
