"""Decoding modes against step-by-step Python implementations of their rules, and their
invariants (beam 1 is greedy, padding changes nothing, finished rows read nothing)."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from asl_keras import vocab
from asl_keras.decoding import Decoding, beam_search, decode, mean_ctc_log_probs
from asl_keras.layers import ctc
from asl_keras.layers.decoder import ReferenceDecoder, greedy_decode
from tests.layers.test_ctc import random_log_probs, textbook_prefix

FRAMES, DIM = 12, 16
CANDIDATES = [*range(vocab.NUM_CHARS), vocab.EOS]


@pytest.fixture(scope="module")
def setup():
    """A random 1-layer decoder whose head is scaled up (decisions depend on the encoder
    output) and never picks a special token, encoder outputs of 3 clips, and random CTC
    log-probabilities."""
    decoder = ReferenceDecoder(DIM, num_layers=1, num_heads=2, ffn_dim=32)
    decoder.build()
    # layer-norm offset 3 and special-token columns -3: their logits are <= -96 (a char's
    # is not), so greedy decoding never picks PAD, SOS or the mask, which the beam excludes
    decoder.layer_norm.beta.assign(np.full(DIM, 3.0, np.float32))
    kernel = 40.0 * decoder.lm_head.kernel.numpy()
    kernel[:, [vocab.PAD, vocab.SOS, vocab.DECODER_MASK]] = -3.0
    decoder.lm_head.kernel.assign(kernel)
    encoded = np.random.default_rng(0).normal(size=(3, FRAMES, DIM)).astype("float32")
    mask = np.ones((3, FRAMES), "float32")
    return decoder, encoded, mask, random_log_probs(3, FRAMES, seed=3)


def attention_log_probs(decoder, encoded, mask, prefix: list[int]) -> np.ndarray:
    """log p(next | SOS + prefix) of one clip, teacher forced without a cache."""
    logits = decoder(np.array([[vocab.SOS, *prefix]], np.int32), encoded[None], mask[None])
    return ops.log_softmax(logits[0, -1]).numpy()


def step_scores(decoder, encoded, mask, log_probs, prefix, weight) -> dict[int, float]:
    """Joint score of every candidate after `prefix` (weight 0: attention only)."""
    attention = attention_log_probs(decoder, encoded, mask, prefix)
    scores = {}
    for c in CANDIDATES:
        score = attention[c]
        if weight:
            nonblank, blank, before = textbook_prefix(log_probs, prefix)
            after = (nonblank[-1] + blank[-1] if c == vocab.EOS
                     else textbook_prefix(log_probs, [*prefix, c])[2])
            before = 1.0 if not prefix else before
            score = (1 - weight) * score + weight * (np.log(after) - np.log(before))
        scores[c] = score
    return scores


def python_beam(decoder, encoded, mask, log_probs, beam, weight, max_steps):
    """The beam rules with lists: extend every unfinished prefix by every candidate, keep the
    `beam` best of those and of the finished prefixes, best first."""
    hypotheses = [([], 0.0, False)]
    for _ in range(max_steps):
        if all(done for _, _, done in hypotheses):
            break
        grown = []
        for prefix, score, done in hypotheses:
            if done:
                grown.append((prefix, score, True))
                continue
            scores = step_scores(decoder, encoded, mask, log_probs, prefix, weight)
            grown += [([*prefix, c], score + s, c == vocab.EOS) for c, s in scores.items()]
        hypotheses = sorted(grown, key=lambda h: -h[1])[:beam]
    return hypotheses[0][0]


def read(ids) -> list[int]:
    row = [int(i) for i in np.asarray(ids)[1:]]
    return row[:row.index(vocab.EOS) + 1] if vocab.EOS in row else row


@pytest.mark.parametrize("beam,weight", [(1, 0.3), (3, 0.0), (3, 0.3), (1, 0.8)])
def test_beam_search_equals_the_rules_step_by_step(setup, beam, weight):
    decoder, encoded, mask, log_probs = setup
    max_steps = 6
    ids = beam_search([(decoder, encoded, mask)], beam, log_probs if weight else None,
                      weight or 0.3, max_steps=max_steps)
    for b in range(3):
        expected = python_beam(decoder, encoded[b], mask[b], log_probs[b], beam, weight,
                               max_steps)
        assert read(ids[b]) == expected, b


def test_beam_one_without_ctc_is_greedy_attention_decoding(setup):
    decoder, encoded, mask, _ = setup
    greedy = greedy_decode(decoder, encoded, mask)[0].numpy()
    assert np.isin(greedy[:, 1:], [*range(vocab.NUM_CHARS), vocab.EOS, vocab.PAD]).all()
    searched = beam_search([(decoder, encoded, mask)], 1).numpy()
    assert [read(r) for r in searched] == [read(r) for r in greedy]


def test_modes_read_the_same_when_clips_are_padded(setup):
    """A batch padded to more frames (masked; blank-certain CTC frames) decodes as before."""
    decoder, encoded, mask, log_probs = setup
    pad = 5
    encoded_p = np.concatenate([encoded, np.zeros((3, pad, DIM), "float32")], axis=1)
    mask_p = np.concatenate([mask, np.zeros((3, pad), "float32")], axis=1)
    log_probs_p = ctc.ctc_log_probs(np.concatenate(
        [log_probs, np.zeros((3, pad, ctc.CLASSES), "float32")], axis=1), mask_p)
    for decoding in (Decoding("ctc"), Decoding("joint"), Decoding("joint", beam=3)):
        plain = decode(decoding, [(decoder, encoded, mask)], log_probs)
        padded = decode(decoding, [(decoder, encoded_p, mask_p)], log_probs_p)
        assert [read(r) for r in plain] == [read(r) for r in padded], decoding


def test_finished_rows_read_no_characters_in_every_mode(setup):
    decoder, encoded, mask, log_probs = setup
    finished = np.array([True, False, True])
    for decoding in (Decoding(), Decoding("ctc"), Decoding("joint"),
                     Decoding("attention", beam=3), Decoding("joint", beam=3)):
        ids = decode(decoding, [(decoder, encoded, mask)], log_probs, finished=finished)
        texts = [vocab.decode(r[1:]) for r in np.asarray(ids)]
        assert texts[0] == texts[2] == "" and texts[1], decoding


def test_ensemble_ctc_log_probs_are_the_renormalised_mean():
    a, b = random_log_probs(2, 7, seed=4), random_log_probs(2, 7, seed=5)
    mask = np.ones((2, 7), "float32")
    mean = mean_ctc_log_probs([a, b], mask).numpy()
    expected = (a + b) / 2
    expected -= np.log(np.exp(expected).sum(-1, keepdims=True))
    np.testing.assert_allclose(mean, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    ({"mode": "prefix"}, "expected one of attention, ctc, joint"),
    ({"mode": "joint", "ctc_weight": 1.0}, "between 0 and 1"),
    ({"beam": 0}, "expected >= 1"),
    ({"mode": "ctc", "beam": 4}, "1 for the ctc mode"),
])
def test_bad_decoding_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Decoding(**kwargs)


def test_modes_that_need_ctc_refuse_to_run_without_it(setup):
    decoder, encoded, mask, _ = setup
    with pytest.raises(ValueError, match="needs the CTC log-probabilities"):
        decode(Decoding("joint"), [(decoder, encoded, mask)])
