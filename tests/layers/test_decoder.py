"""The reference decoder against the 1st-place fixtures, plus cache, masking and saving checks."""

from __future__ import annotations

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from asl_keras import reference
from asl_keras.layers import decoder as dec_lib
from asl_keras.layers.decoder import (
    ReferenceDecoder,
    backward_targets,
    flip_time,
    greedy_decode,
    sequence_cross_entropy,
    shift_right,
    uncached_greedy_decode,
)
from asl_keras.vocab import EOS, LABEL_LEN, PAD, SOS, VOCAB_SIZE
from tests.paths import REF1ST, reference_fixtures

MODEL_FIXTURES = reference_fixtures("model")
B_FIXTURE = os.path.join(REF1ST, "model_mdl2_small_seed0.npz")
TOL = dict(atol=1e-4, rtol=1e-4)


def build(path: str, prefix: str = "decoder.", **kwargs) -> ReferenceDecoder:
    config = json.load(open(path.replace(".npz", ".json")))["config"]["transformer_config"]
    decoder = ReferenceDecoder(**reference.decoder_kwargs(config), **kwargs)
    reference.import_decoder(decoder, reference.load_state_dict(path), prefix)
    return decoder


@pytest.fixture(scope="module")
def fixture_b():
    """Fixture B's arrays and its imported forward and backward decoders."""
    return np.load(B_FIXTURE), build(B_FIXTURE), build(B_FIXTURE, "decoder2.")


def np_(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("path", MODEL_FIXTURES, ids=os.path.basename)
def test_teacher_forcing_and_loss_match_reference(path):
    ref = np.load(path)
    enc, mask = ref["out/encoder_output"], ref["in/input_mask"]
    inputs = np_(shift_right(ref["out/dec_fwd_labels"]))
    np.testing.assert_array_equal(inputs, ref["out/dec_fwd_input_ids"])
    logits = np_(build(path)(inputs, enc, mask))
    np.testing.assert_allclose(logits, ref["out/logits_fwd"], **TOL)
    per_sample = np_(sequence_cross_entropy(ref["out/dec_fwd_labels"], logits))
    # the reference's CE is a mean over all B x 33 label positions (PAD targets included)
    loss = ref["out/loss_ce"] if "out/loss_ce" in ref else ref["out/loss"]
    np.testing.assert_allclose(per_sample.mean(), loss, **TOL)

    if "sd/decoder2.lm_head.weight" in ref:  # cfg_2's backward decoder
        targets, weights = map(np_, backward_targets(ref["out/dec_fwd_labels"]))
        lb = ref["out/dec_bwd_labels"].shape[1]
        np.testing.assert_array_equal(targets[:, :lb], ref["out/dec_bwd_labels"])
        assert (targets[:, lb:] == 0).all() and (weights == (np.arange(LABEL_LEN) < lb)).all()
        inputs = np_(shift_right(targets))
        np.testing.assert_array_equal(inputs[:, :lb], ref["out/dec_bwd_input_ids"])
        enc_b, mask_b = flip_time(enc, mask)
        np.testing.assert_array_equal(np_(mask_b), ref["out/dec_bwd_encoder_mask"])
        logits = np_(build(path, "decoder2.")(inputs, enc_b, mask_b))
        # the 0-padding to 33 leaves the first Lb positions unchanged (causal attention)
        np.testing.assert_allclose(logits[:, :lb], ref["out/logits_bwd"], **TOL)
        per_sample = np_(sequence_cross_entropy(targets, logits, weights))
        np.testing.assert_allclose(per_sample.mean(), ref["out/loss_ce_bwd"], **TOL)


@pytest.mark.parametrize("path", MODEL_FIXTURES, ids=os.path.basename)
def test_greedy_matches_reference_and_uncached(path):
    ref = np.load(path)
    decoder, enc, mask = build(path), ref["out/encoder_output"], ref["in/input_mask"]
    ids, logits, steps = map(np_, greedy_decode(decoder, enc, mask))
    raw = ref["out/generated_ids_raw"]
    assert steps == raw.shape[1] - 1
    np.testing.assert_array_equal(ids[:, : steps + 1], raw)
    np.testing.assert_allclose(logits[:, :steps], ref["out/greedy_step_logits"], **TOL)
    assert (ids[:, steps + 1:] == PAD).all() and (logits[:, steps:] == 0).all()
    # the uncached loop, traced into a graph (the export path runs as a tf.function too)
    u_ids, u_logits, u_steps = map(np_, tf.function(uncached_greedy_decode)(decoder, enc, mask))
    assert u_steps == steps
    np.testing.assert_array_equal(u_ids, ids)
    np.testing.assert_allclose(u_logits, logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("path", MODEL_FIXTURES, ids=os.path.basename)
def test_finished_samples_start_done_and_a_finished_batch_runs_no_step(path):
    ref = np.load(path)
    decoder, enc, mask = build(path), ref["out/encoder_output"], ref["in/input_mask"]
    ids, _, steps = map(np_, greedy_decode(decoder, enc, mask))
    batch = ids.shape[0]
    skipped, logits, none = map(np_, greedy_decode(decoder, enc, mask,
                                                   finished=np.ones(batch, bool)))
    assert none == 0 and (skipped[:, 0] == SOS).all() and (skipped[:, 1:] == PAD).all()
    assert (logits == 0).all()
    # one sample marked finished: the others decode as before, for as many steps
    some = np.arange(batch) == 0
    partly, _, partly_steps = map(np_, greedy_decode(decoder, enc, mask, finished=some))
    assert partly_steps <= steps
    np.testing.assert_array_equal(partly[1:, :partly_steps + 1], ids[1:, :partly_steps + 1])


def test_ensemble_averages_member_logits(fixture_b):
    ref, fwd, bwd = fixture_b
    enc, mask = ref["out/encoder_output"], ref["in/input_mask"]
    enc_b, mask_b = flip_time(enc, mask)
    members = [(fwd, enc, mask), (bwd, enc_b, mask_b)]
    ids, logits, steps = map(np_, greedy_decode(members, max_steps=6))
    u_ids, u_logits, _ = map(np_, uncached_greedy_decode(members, max_steps=6))
    np.testing.assert_array_equal(u_ids, ids)
    np.testing.assert_allclose(u_logits, logits, atol=1e-5, rtol=0)
    mean = (np_(fwd(ids[:, :6], enc, mask)) + np_(bwd(ids[:, :6], enc_b, mask_b))) / 2
    np.testing.assert_allclose(logits, mean, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(ids[:, 1:], mean.argmax(-1))
    with pytest.raises(ValueError, match="inside the"):
        greedy_decode(members, enc)


def test_padding_and_batching_do_not_change_outputs(fixture_b):
    ref, decoder, _ = fixture_b
    enc, mask = ref["out/encoder_output"], ref["in/input_mask"]
    tokens = ref["out/dec_fwd_input_ids"]
    logits = np_(decoder(tokens, enc, mask))
    ids, step_logits, _ = map(np_, greedy_decode(decoder, enc, mask, max_steps=8))
    # more masked frames, holding garbage
    noise = np.random.default_rng(0).normal(size=(2, 40, enc.shape[2])).astype(np.float32)
    enc_p, mask_p = np.concatenate([enc, noise], 1), np.concatenate([mask, 0 * mask[:, :40]], 1)
    np.testing.assert_allclose(np_(decoder(tokens, enc_p, mask_p)), logits, atol=1e-5, rtol=0)
    p_ids, p_logits, _ = map(np_, greedy_decode(decoder, enc_p, mask_p, max_steps=8))
    np.testing.assert_array_equal(p_ids, ids)
    np.testing.assert_allclose(p_logits, step_logits, atol=1e-5, rtol=0)
    # sample 1 (150 valid frames) alone, cut to its valid frames
    alone = np_(decoder(tokens[1:], enc[1:, :150], mask[1:, :150]))
    np.testing.assert_allclose(alone, logits[1:], atol=1e-5, rtol=0)
    a_ids, a_logits, _ = map(np_, greedy_decode(decoder, enc[1:, :150], None, max_steps=8))
    np.testing.assert_array_equal(a_ids, ids[1:])
    np.testing.assert_allclose(a_logits, step_logits[1:], atol=1e-5, rtol=0)


def test_fully_masked_encoder_and_pad_tokens_stay_finite(fixture_b):
    ref, decoder, _ = fixture_b
    enc = ref["out/encoder_output"]
    tokens = np.full((2, 5), PAD)
    tokens[:, 0] = SOS
    logits = np_(decoder(tokens, enc, np.zeros(enc.shape[:2], np.float32)))
    assert np.isfinite(logits).all()
    # PAD inputs do not advance the positions, in the cache as in teacher forcing
    cache = decoder.init_cache(enc, ref["in/input_mask"], max_len=5)
    for i in range(5):
        step, cache = decoder.step(tokens[:, i], i, cache)
    np.testing.assert_allclose(
        np_(step), np_(decoder(tokens, enc, ref["in/input_mask"]))[:, -1], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(np_(cache["count"]), [1, 1])


def test_keras_save_load_keeps_greedy_decoding(fixture_b, tmp_path):
    ref, decoder, _ = fixture_b
    d = decoder.d_model
    inputs = [keras.Input((None,), dtype="int32"), keras.Input((None, d)), keras.Input((None,))]
    model = keras.Model(inputs, decoder(*inputs))
    args = [ref["out/dec_fwd_input_ids"], ref["out/encoder_output"], ref["in/input_mask"]]
    path = str(tmp_path / "decoder.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(np_(loaded(args)), np_(model(args)))
    restored = loaded.layers[-1]
    assert isinstance(restored, ReferenceDecoder)
    np.testing.assert_array_equal(np_(greedy_decode(restored, *args[1:], max_steps=4)[0]),
                                  np_(greedy_decode(decoder, *args[1:], max_steps=4)[0]))


def test_mixed_float16_runs_finite():
    ref = np.load(B_FIXTURE)
    decoder = build(B_FIXTURE, dtype="mixed_float16")
    assert decoder.compute_dtype == "float16" and decoder.embed_tokens.dtype == "float32"
    enc, mask = ref["out/encoder_output"], ref["in/input_mask"]
    logits = np_(decoder(ref["out/dec_fwd_input_ids"], enc, mask))
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
    np.testing.assert_allclose(logits, ref["out/logits_fwd"], atol=0.05)
    ids, step_logits, _ = map(np_, greedy_decode(decoder, enc, mask, max_steps=4))
    assert np.isfinite(step_logits).all()
    assert decoder.init_cache(enc, mask)["self_k"][0].dtype == "float16"
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(sequence_cross_entropy(ref["out/dec_fwd_labels"], decoder(
            ref["out/dec_fwd_input_ids"], enc, mask, training=True)))
    grads = tape.gradient(loss, decoder.trainable_variables)
    assert all(np.isfinite(np_(g)).all() for g in grads)


def test_helpers_shapes_and_quirks():
    labels = np.array([[5, 6, 7, EOS, PAD], [8, EOS, PAD, PAD, PAD]])
    np.testing.assert_array_equal(np_(shift_right(labels)),
                                  [[SOS, 5, 6, 7, EOS], [SOS, 8, EOS, PAD, PAD]])
    targets, weights = map(np_, backward_targets(labels))
    np.testing.assert_array_equal(targets, [[7, 6, 5, EOS, 0], [8, EOS, 0, 0, 0]])
    np.testing.assert_array_equal(weights, [[1, 1, 1, 1, 0]] * 2)
    logits = np.random.default_rng(1).normal(size=(2, 5, VOCAB_SIZE)).astype(np.float32)
    masked = labels.copy()
    masked[:, -1] = -100  # ignore_index positions drop out of the per-sample mean
    full = np_(sequence_cross_entropy(labels, logits))
    cut = np_(sequence_cross_entropy(masked, logits))
    first4 = np_(sequence_cross_entropy(labels[:, :4], logits[:, :4]))
    np.testing.assert_allclose(cut, first4, rtol=1e-6)
    assert full.shape == (2,) and not np.allclose(full, cut)
    pos = np_(dec_lib.position_ids(np.array([[SOS, 3, PAD, 4, EOS]])))
    np.testing.assert_array_equal(pos, [[PAD + 1, PAD + 2, PAD, PAD + 3, PAD + 4]])


def test_importer_names_bad_keys(fixture_b, tmp_path):
    state = reference.load_state_dict(B_FIXTURE)
    decoder = ReferenceDecoder(d_model=64, ffn_dim=128)
    error = reference.WeightImportError
    key = "decoder.decoder.layers.1.fc2.bias"
    with pytest.raises(error, match=re.escape(f"missing {key}")):
        reference.import_decoder(decoder, {k: v for k, v in state.items() if k != key})
    with pytest.raises(error, match=re.escape("unused decoder.extra.weight")):
        reference.import_decoder(decoder, {**state, "decoder.extra.weight": np.zeros(3)})
    key = "decoder.lm_head.weight"
    with pytest.raises(error, match=re.escape(f"mis-shaped {key}")):
        reference.import_decoder(decoder, {**state, key: np.zeros((VOCAB_SIZE, 32))})
    key = "decoder.decoder.embed_positions.weights"
    interleaved = state[key].reshape(-1, 2, 32).transpose(0, 2, 1).reshape(-1, 64)
    with pytest.raises(error, match=re.escape(f"mismatching {key}")):
        reference.import_decoder(decoder, {**state, key: interleaved})
    with pytest.raises(error, match="unused decoder2"):
        reference.import_decoder(decoder, state, prefix="decoder")  # prefix without the dot
    with pytest.raises(error, match="activation_function"):
        reference.decoder_kwargs({"activation_function": "gelu"})
    # a plain npz without the fixtures' sd/ prefix, and .pth: read with PyTorch, else refused
    decoder_state = {k: v for k, v in state.items() if k.startswith("decoder.")}
    plain = str(tmp_path / "plain.npz")
    np.savez(plain, **decoder_state)
    assert reference.load_state_dict(plain).keys() == decoder_state.keys()
    pth = str(tmp_path / "checkpoint.pth")
    try:
        import torch
    except ImportError:
        with pytest.raises(ImportError, match="needs PyTorch"):
            reference.load_state_dict(pth)
    else:  # as the 1st place's train.py saves it: {"model": state_dict}
        torch.save({"model": {k: torch.from_numpy(np.array(v)) for k, v in
                              decoder_state.items()}}, pth)
        loaded = reference.load_state_dict(pth)
        assert loaded.keys() == decoder_state.keys()
        assert all(np.array_equal(loaded[k], v) for k, v in decoder_state.items())
