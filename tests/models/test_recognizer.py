"""The whole model against the 1st-place reference fixtures, plus its invariants."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from asl_keras import config, reference, vocab
from asl_keras.models.recognizer import Recognizer, build_recognizer
from tests.paths import config_path, reference_fixtures

MODEL_FIXTURES = reference_fixtures("model")


def model_config(settings: dict) -> dict:
    """Recognizer sizes from a fixture JSON (`config` of the reference Net)."""
    enc, dec_cfg = settings["encoder_config"], settings["transformer_config"]
    cfg2 = "return_aux_logits" in settings  # mdl_2 carries the cfg_2 heads
    return {"dim": enc["encoder_dim"], "blocks": enc["num_layers"],
            "heads": enc["num_attention_heads"], "attention": "rotary" if cfg2 else "relative",
            "part_extractors": cfg2, "ff_expansion": enc["feed_forward_expansion_factor"],
            "conv_expansion": enc["conv_expansion_factor"], "kernel_size": enc["conv_kernel_size"],
            "decoder_layers": dec_cfg["decoder_layers"],
            "decoder_heads": dec_cfg["decoder_attention_heads"],
            "decoder_ffn": dec_cfg["decoder_ffn_dim"], "backward_decoder": cfg2,
            "confidence_head": cfg2,
            "backward_loss_weight": settings.get("bwd_loss_weight", 0.4),
            "aux_loss_weight": settings.get("aux_loss_weight", 0.02)}


@pytest.fixture(scope="module", params=MODEL_FIXTURES, ids=os.path.basename)
def fixture(request):
    path = request.param
    f = dict(np.load(path))
    settings = json.load(open(path.replace(".npz", ".json")))["config"]
    model = Recognizer(model_config(settings))
    model.build()
    reference.import_recognizer(model, reference.load_state_dict(path))
    return model, f


def test_both_model_families_are_covered():
    names = {os.path.basename(p) for p in MODEL_FIXTURES}
    assert {"model_mdl1_small_seed0.npz", "model_mdl2_small_seed0.npz"} <= names


def close(a, b, valid=None):
    a, b = np.asarray(a), np.asarray(b)
    if valid is not None:
        a, b = a[valid], b[valid]
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_every_stage_matches_the_reference(fixture):
    model, f = fixture
    x, mask = f["in/input"], f["in/input_mask"]
    valid = mask.astype(bool)
    close(model.embedding.all(x, mask), f["out/fe_all"], valid)
    emb = model.embedding(x, mask)
    close(emb, f["out/encoder_input"], valid)
    h = emb
    for i, block in enumerate(model.encoder.blocks):
        h = block(h, mask)
        close(h, f[f"out/encoder_block{i}_output"], valid)
    inputs = {"landmarks": x, "mask": mask, "labels": f["in/token_ids"],
              "score": f.get("in/score", np.ones(2, np.float32))}
    out = model(inputs)
    close(out["encoded"], f["out/encoder_output"], valid)
    close(out["logits"], f["out/logits_fwd"])
    if "out/logits_bwd" in f:
        lb = f["out/logits_bwd"].shape[1]
        close(out["logits_bwd"][:, :lb], f["out/logits_bwd"])
        close(out["confidence"], f["out/aux_logits"][:, 0])
    loss = float(np.mean(model.per_sample_loss(inputs, out)))
    assert abs(loss - float(f["out/loss"])) < 1e-4


def test_greedy_ids_match_the_reference(fixture):
    model, f = fixture
    ids, logits, steps = model.generate(f["in/input"], f["in/input_mask"])
    raw = f["out/generated_ids_raw"]
    np.testing.assert_array_equal(np.asarray(ids)[:, : int(steps) + 1], raw)
    close(np.asarray(logits)[:, : raw.shape[1] - 1], f["out/greedy_step_logits"])


def test_batching_does_not_change_outputs(fixture):
    """At the fixed max_len every input is padded to, a sample's outputs ignore its batch."""
    model, f = fixture
    x, mask = f["in/input"], f["in/input_mask"]
    for i in range(len(x)):
        alone = np.asarray(model.encode(x[i:i + 1], mask[i:i + 1]))
        batched = np.asarray(model.encode(x, mask))[i:i + 1]
        np.testing.assert_allclose(alone, batched, atol=1e-5)


@pytest.mark.parametrize("encoder", ["squeezeformer", "zipformer"])
def test_padding_does_not_change_outputs_with_zeroed_glu_pads(encoder):
    """The reference's conv module leaks pw_conv_1's bias from padded frames into the last
    kernel//2 real ones; with `zero_glu_pads` (and in the Zipformer) padding is invisible."""
    model = Recognizer({"encoder": encoder, "dim": 32, "blocks": 2, "ffn_dims": [24, 32, 40],
                        "decoder_ffn": 64, "zero_glu_pads": True, "kernel_size": 9})
    model.build()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 40, 130, 3)).astype(np.float32)
    mask = np.ones((2, 40), np.float32)
    mask[0, 25:] = 0
    x[0, 25:] = 0  # padded frames are zero, as the pipeline makes them
    alone = np.asarray(model.encode(x[:1, :25], mask[:1, :25]))
    padded = np.asarray(model.encode(x[:1], mask[:1]))[:, :25]
    batched = np.asarray(model.encode(x, mask))[:1, :25]
    np.testing.assert_allclose(alone, padded, atol=1e-5)
    np.testing.assert_allclose(alone, batched, atol=1e-5)


def test_save_and_load_give_identical_outputs(fixture, tmp_path):
    model, f = fixture
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    a = model.encode(f["in/input"], f["in/input_mask"])
    b = loaded.encode(f["in/input"], f["in/input_mask"])
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name,expected", [("cfg_1.yaml", 2_515_040),
                                           ("cfg_2_squeezeformer.yaml", 9_736_305)])
def test_full_size_parameter_counts_equal_the_reference(name, expected):
    model = build_recognizer(config.load(config_path(name)))
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == expected


def test_decoder_input_masking_only_in_training():
    model = Recognizer({"dim": 32, "blocks": 1, "decoder_ffn": 64}, decoder_mask=0.5)
    model.build()
    labels = np.full((4, 33), 5, np.int32)
    assert (np.asarray(model.decoder_inputs(labels, False))[:, 1:] == 5).all()
    masked = np.asarray(model.decoder_inputs(labels, True))
    assert 0.3 < (masked[:, 1:] == vocab.DECODER_MASK).mean() < 0.7


def decoder_masks(seed, calls=2):
    """Which decoder inputs get masked in `calls` training calls of a fresh model of a run
    with `seed`: bool `[calls, 4, 33]`."""
    cfg = config.from_dict(config.Config, {
        "seed": seed, "model": {"dim": 32, "blocks": 1, "decoder_ffn": 64},
        "data": {"augment": {"decoder_mask": 0.5}}})
    model = build_recognizer(cfg)
    labels = np.full((4, 33), 5, np.int32)
    return np.array([np.asarray(model.decoder_inputs(labels, True)) == vocab.DECODER_MASK
                     for _ in range(calls)])


def test_decoder_input_masking_follows_the_run_seed():
    keras.utils.set_random_seed(0)
    first = decoder_masks(0)
    assert not np.array_equal(first[0], first[1])  # the draws move on between calls
    keras.utils.set_random_seed(1)  # the global seed does not decide them
    np.testing.assert_array_equal(decoder_masks(0), first)
    keras.utils.set_random_seed(0)
    assert not np.array_equal(decoder_masks(1), first)  # ensemble members mask differently


def test_importer_names_missing_keys(fixture):
    model, f = fixture
    sd = reference.load_state_dict(MODEL_FIXTURES[0])
    sd.pop(next(k for k in sd if k.startswith("encoder.blocks.0.ln_conv")))
    with pytest.raises(reference.WeightImportError, match=r"missing encoder\.blocks\.0\.ln_conv"):
        reference.import_recognizer(model, sd)


@pytest.mark.parametrize("encoder", ["squeezeformer", "zipformer"])
def test_mixed_precision_runs_and_stays_close(encoder):
    cfg = {"encoder": encoder, "dim": 32, "blocks": 1, "ffn_dims": [24, 32, 40],
           "decoder_ffn": 64, "kernel_size": 9}
    rng = np.random.default_rng(0)
    inputs = {"landmarks": rng.normal(size=(2, 24, 130, 3)).astype(np.float32),
              "mask": np.ones((2, 24), np.float32),
              "labels": np.full((2, 33), 59, np.int32), "score": np.ones(2, np.float32)}
    ref = Recognizer(cfg)
    ref.build()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        half = Recognizer(cfg)
        half.build()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    half.set_weights(ref.get_weights())
    out16, out32 = half(inputs), ref(inputs)
    assert out16["encoded"].dtype == "float16" and out16["logits"].dtype == "float32"
    loss16 = np.asarray(half.per_sample_loss(inputs, out16))
    assert np.isfinite(loss16).all()
    np.testing.assert_allclose(loss16, np.asarray(ref.per_sample_loss(inputs, out32)), rtol=2e-2)
