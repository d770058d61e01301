"""TFLite export: parity with Keras, robustness, contract checks, package, size.

The tiny rigged ensemble and its exports are session fixtures (`conftest.py`; see
`tests/export/__init__.py` for why and how the random models are rigged).
"""

from __future__ import annotations

import json
import os
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter as LiteRTInterpreter

import export_tflite
from asl_keras import config, landmarks, vocab
from asl_keras.data import preprocess
from asl_keras.decoding import DEFAULT_DECODING, GREEDY_ATTENTION, Decoding
from asl_keras.decoding import resolve as resolve_decoding
from asl_keras.export import submission, tflite
from asl_keras.inference import MIN_FRAMES
from asl_keras.models.recognizer import build_recognizer
from asl_keras.training.metrics import normalized_total
from tests.export import TINY, signing_clips, write_config
from tests.export.conftest import DECODING_MODES
from tests.paths import config_path

MAX_LEN = TINY["data"]["max_len"]
INTERPRETERS = {"tf.lite": tf.lite.Interpreter, "ai_edge_litert": LiteRTInterpreter}
# fp16 vs fp32 on the rigged random ensemble. fp16 weights move logits by ~1e-3 of their
# spread, the rig's smallest top-2 gaps are ~3e-4 of it: a few greedy steps may flip, and a
# flip changes the rest of its sequence (~15 characters out of ~800 in 40 clips), so
# agreement >= 0.95. Trained models have far larger margins; the export's own fp16 bar is
# 0.998 (PARITY_MIN).
FP16_MIN_AGREEMENT = 0.95


@pytest.fixture(scope="module")
def models(checkpoints):
    cfg_path, paths = checkpoints
    return tflite.load_models(config.load(cfg_path), paths)


def model_path(folder: str) -> str:
    return os.path.join(folder, submission.MODEL_FILE)


def texts(folder: str, clips) -> list[str]:
    run = tflite.runner(model_path(folder))
    return [tflite.tflite_text(run, clip) for clip in clips]


def assert_meaningful(reference: list[str], minimum: int) -> None:
    """Enough clips are decoded (not the dummy phrase) and they decode differently."""
    decoded = [t for t in reference if t != vocab.DUMMY_PHRASE]
    assert len(decoded) >= minimum and len(set(decoded)) >= 3, reference


def test_fp32_tokens_equal_keras_greedy_tokens(fp32, models):
    clips = signing_clips(32, seed=1)
    reference = tflite.keras_texts(models, MAX_LEN, clips)
    assert_meaningful(reference, 20)
    assert texts(fp32, clips) == reference


@pytest.mark.slow
def test_fp32_tokens_equal_keras_greedy_tokens_on_200_clips(fp32, models):
    clips = signing_clips(280, seed=2)
    reference = tflite.keras_texts(models, MAX_LEN, clips)
    assert_meaningful(reference, 200)
    assert texts(fp32, clips) == reference


@pytest.mark.parametrize("mode", list(DECODING_MODES))
def test_every_decoding_mode_gives_the_keras_tokens_in_fp32(mode, mode_export, models):
    """The mode really runs: on the rigged ensemble its strings differ from every other mode's
    on most decoded clips, and TFLite's equal Keras' one by one."""
    clips = signing_clips(32, seed=1)
    texts_of = {name: tflite.keras_texts(models, MAX_LEN, clips, decoding=d)
                for name, d in {"attention": Decoding(), **DECODING_MODES}.items()}
    reference = texts_of[mode]
    assert_meaningful(reference, 20)
    decoded = [i for i, t in enumerate(reference) if t != vocab.DUMMY_PHRASE]
    for other, theirs in texts_of.items():
        if other != mode:
            assert sum(reference[i] != theirs[i] for i in decoded) >= len(decoded) // 2, other
    run = tflite.runner(mode_export(mode))
    assert [tflite.tflite_text(run, clip) for clip in clips] == reference


def test_decoding_modes_that_need_a_ctc_head_refuse_models_without_one(tmp_path, models):
    values = {**TINY, "model": {**TINY["model"], "ctc_loss_weight": 0.0}}
    model = build_recognizer(config.load(write_config(tmp_path / "c.yaml", values)))
    for decoding in (Decoding("ctc"), Decoding("joint", beam=4)):
        with pytest.raises(ValueError, match="model.ctc_loss_weight > 0"):
            tflite.convert([model], MAX_LEN, "fp32", decoding)
    # the default: joint decoding when every member can, else the 1st place's
    assert resolve_decoding(models) == DEFAULT_DECODING
    assert resolve_decoding([models[0], model]) == GREEDY_ATTENTION


def test_command_line_refuses_bad_decoding_settings(checkpoints, tmp_path, capsys):
    cfg_path, paths = checkpoints
    base = ["--config", cfg_path, "--checkpoints", *paths, "--out", str(tmp_path / "out")]
    for extra, message in ((["--decoding", "ctc", "--beam", "4"], "1 for the ctc mode"),
                           (["--beam", "4"], "need an explicit --decoding"),
                           (["--decoding", "joint", "--ctc-weight", "0"], "between 0 and 1")):
        with pytest.raises(SystemExit):
            export_tflite.main(base + extra)
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_int8_is_smaller_than_fp16_and_close_to_fp32(fp32, fp16, int8):
    # fp16 halves the weights and int8 quarters them, so int8 saves 1.5x what fp16 saves;
    # a few small tensors stay float (measured 1.40x on this ensemble)
    size = {k: os.path.getsize(model_path(f)) for k, f in
            (("fp32", fp32), ("fp16", fp16), ("int8", int8))}
    assert size["fp32"] - size["int8"] > 1.3 * (size["fp32"] - size["fp16"])
    clips = signing_clips(40, seed=1)
    assert normalized_total(texts(fp32, clips), texts(int8, clips)) >= FP16_MIN_AGREEMENT


def test_fp16_is_smaller_and_close_to_fp32(fp32, fp16):
    # Weights shrink to half; the graph itself (WHILE/IF bodies, constant tables; ~300 kB for
    # this tiny ensemble, negligible at cfg_2 size) does not, so the file ratio here is ~0.61.
    assert os.path.getsize(model_path(fp16)) < 0.65 * os.path.getsize(model_path(fp32))
    clips = signing_clips(40, seed=1)
    full, half = texts(fp32, clips), texts(fp16, clips)
    assert all(half)
    assert normalized_total(full, half) >= FP16_MIN_AGREEMENT


def edge_cases() -> dict[str, np.ndarray]:
    """Inputs the harness could send: odd lengths, missing data, non-finite and huge values."""
    rng = np.random.default_rng(0)
    width = len(landmarks.SELECTED_COLUMNS)
    cases = {f"{t} frames": rng.random((t, width), dtype=np.float32)
             for t in (0, 1, 2, MIN_FRAMES - 1, MIN_FRAMES, 384, 385, 5000)}
    frames = rng.random((60, width), dtype=np.float32)
    frames[::3] = np.nan
    cases["all-NaN frames"] = frames
    cases["all-NaN sequence"] = np.full((60, width), np.nan, np.float32)
    frames = rng.random((60, width), dtype=np.float32)
    frames[:, ::5], frames[:, 1::5] = np.inf, -np.inf
    cases["+-inf values"] = frames
    cases["1e30 coordinates"] = (rng.random((60, width)) * 1e30).astype(np.float32)
    cases["+-3e38 coordinates"] = np.where(rng.random((60, width)) < 0.5, -3e38, 3e38
                                           ).astype(np.float32)
    return cases


def edge_runner(interpreter: str, precision: str, request):
    """Signature runner of `interpreter` on the attention export of `precision` (fp32, fp16,
    int8) or on the fp32 export of a decoding mode (a DECODING_MODES name)."""
    if precision in DECODING_MODES:
        source = {"model_content": request.getfixturevalue("mode_export")(precision)}
    else:
        source = {"model_path": model_path(request.getfixturevalue(precision))}
    return INTERPRETERS[interpreter](**source).get_signature_runner(tflite.SIGNATURE)


def test_automatic_weights_are_fp16_unless_only_int8_fits(checkpoints, models, fp16, int8,
                                                          tmp_path, monkeypatch):
    """The choice and the conversions it makes; the converter is a spy that hands back this
    ensemble's fp16 and int8 files of the session (made by the same conversion)."""
    cfg_path, paths = checkpoints
    sizes = [os.path.getsize(model_path(f)) for f in (fp16, int8)]
    converted = []

    def spy(models, max_len, weights, decoding):
        assert decoding == GREEDY_ATTENTION
        converted.append(weights)
        with open(model_path({"fp16": fp16, "int8": int8}[weights]), "rb") as f:
            return f.read()

    monkeypatch.setattr(tflite, "convert", spy)
    for limit, expected, conversions in ((tflite.SIZE_LIMIT, "fp16", ["fp16"]),
                                         (sum(sizes) // 2, "int8", ["fp16", "int8"])):
        converted.clear()
        result = tflite.export(cfg_path, paths, str(tmp_path / expected), check_clips=0,
                               size_limit=limit, decoding=GREEDY_ATTENTION)
        assert result.weights == expected and result.size_bytes <= limit
        assert f"({expected} weights" in result.summary()
        assert converted == conversions, limit
    # fp16 weights alone over the limit (with the margin): int8 without converting fp16 first
    # (here int8 does not fit either: the tiny graph's own bytes are most of the file)
    converted.clear()
    alone = int(2 * tflite.serving_weights(models, GREEDY_ATTENTION) / tflite.FP16_MARGIN) - 1
    with pytest.raises(tflite.ExportError, match=f"over the limit of {alone / 1e3:,.0f} kB"):
        tflite.export(cfg_path, paths, str(tmp_path / "alone"), check_clips=0, size_limit=alone,
                      decoding=GREEDY_ATTENTION)
    assert converted == ["int8"]


@pytest.mark.parametrize("interpreter", list(INTERPRETERS))
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", *DECODING_MODES])
def test_edge_inputs_give_valid_rows_and_keep_the_interpreter_working(interpreter, precision,
                                                                      request):
    run = edge_runner(interpreter, precision, request)
    clip = signing_clips(1, seed=3)[0]
    expected = tflite.tflite_text(run, clip)
    for name, frames in edge_cases().items():
        out = run(**{tflite.INPUT: frames})[tflite.OUTPUT]
        assert out.ndim == 2 and out.shape[0] >= 1 and out.shape[1] >= vocab.NUM_CHARS, name
        assert np.isfinite(out).all(), name
        if len(frames) < MIN_FRAMES:
            assert tflite.outputs_to_text(out) == vocab.DUMMY_PHRASE, name
        assert tflite.tflite_text(run, clip) == expected, f"interpreter broken after {name}"


def test_contract_holds_for_both_precisions(fp32, fp16):
    for folder in (fp32, fp16):
        with open(model_path(folder), "rb") as f:
            model = f.read()
        ops = tflite.check_contract(model)
        assert "WHILE" in ops and "IF" in ops
        assert not {op for op in ops if op.startswith("CUSTOM")}
        assert not ops & {"READ_VARIABLE", "VAR_HANDLE"}
        assert LiteRTInterpreter(model_content=model).get_signature_list() == {
            "serving_default": {"inputs": ["inputs"], "outputs": ["outputs"]}}
    with open(model_path(fp16), "rb") as f:
        assert "DEQUANTIZE" in tflite.operator_names(f.read())  # float16 weights


def test_size_limit_fails_loudly(fp32):
    with open(model_path(fp32), "rb") as f:
        model = f.read()
    with pytest.raises(tflite.ExportError, match=r"kB, over the limit of .* kB"):
        tflite.check_contract(model, size_limit=len(model) - 1)


def test_command_line_reports_a_broken_contract(fp32, checkpoints, tmp_path, monkeypatch,
                                                capsys):
    """Exit code 1 and the reason, and only `model.FAILED.tflite` is written; the conversion is
    replaced by the finished fp32 model."""
    with open(model_path(fp32), "rb") as f:
        model = f.read()
    monkeypatch.setattr(tflite, "convert", lambda *args, **kwargs: model)
    monkeypatch.setattr(tflite, "SIZE_LIMIT", len(model) // 2)
    cfg_path, paths = checkpoints
    code = export_tflite.main(["--config", cfg_path, "--checkpoints", *paths, "--out",
                               str(tmp_path), "--submission"])
    assert code == 1
    err = capsys.readouterr().err
    assert "over the limit" in err and submission.FAILED_MODEL_FILE in err
    assert os.listdir(tmp_path) == [submission.FAILED_MODEL_FILE]  # nothing that looks finished


def test_unfrozen_keras_variables_are_rejected():
    """docs/tflite.md, pitfall 1: Keras 3 layers on a tf.Module convert "fine" with variable
    ops."""
    dense = keras.layers.Dense(vocab.NUM_CHARS)
    dense.build((None, len(landmarks.SELECTED_COLUMNS)))
    module = tf.Module()
    module.dense = dense
    fn = tf.function(lambda x: {tflite.OUTPUT: dense(x)}, input_signature=[
        tf.TensorSpec([None, len(landmarks.SELECTED_COLUMNS)], tf.float32, name=tflite.INPUT)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()],
                                                                module)
    model = converter.convert()
    assert "READ_VARIABLE" in tflite.operator_names(model)
    with pytest.raises(tflite.ExportError, match="variable ops"):
        tflite.check_contract(model)


def test_submission_zip_holds_exactly_the_two_files(fp32):
    with zipfile.ZipFile(os.path.join(fp32, submission.ZIP_FILE)) as z:
        assert sorted(z.namelist()) == [submission.ARGS_FILE, submission.MODEL_FILE]
        args = json.loads(z.read(submission.ARGS_FILE))
        with open(model_path(fp32), "rb") as f:
            assert z.read(submission.MODEL_FILE) == f.read()
    assert args == {"selected_columns": list(landmarks.SELECTED_COLUMNS)}
    native = {c: i for i, c in enumerate(landmarks.raw_columns())}
    positions = [native[c] for c in args["selected_columns"]]
    assert positions == sorted(positions)  # native parquet order
    assert submission.selected_columns(model_path(fp32)) == args["selected_columns"]


def test_models_are_rebuilt_under_float32(tmp_path):
    """A checkpoint trained under mixed precision exports as float32 (docs/tflite.md, pitfall
    5)."""
    cfg_path = write_config(tmp_path / "tiny.yaml")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        build_recognizer(config.load(cfg_path)).save_weights(tmp_path / "m.weights.h5")
        (model,) = tflite.load_models(config.load(cfg_path), [str(tmp_path / "m.weights.h5")])
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.dtype_policy.name == "float32"
    assert model.decoder.compute_dtype == "float32"


@pytest.mark.slow
@pytest.mark.xdist_group("full_size")  # one worker runs every full-size test: RAM
def test_a_full_size_ensemble_fits_in_40_mb(tmp_path):
    """Four cfg_2 members in int8 with the default (joint) decoding, built and converted: the
    one test of the 40 MB contract on a real conversion (the other ensembles: by arithmetic,
    below). Slow (about 3 minutes): four full-size members are what it checks."""
    cfg = config.load(config_path("cfg_2.yaml"))
    paths = []
    for seed in range(4):
        keras.utils.set_random_seed(seed)
        paths.append(str(tmp_path / f"{seed}.weights.h5"))
        build_recognizer(cfg).save_weights(paths[-1])
    result = tflite.export(config_path("cfg_2.yaml"), paths, str(tmp_path / "out"),
                           weights="int8", check_clips=0)
    assert result.weights == "int8" and result.size_bytes < tflite.SIZE_LIMIT
    assert result.decoding == DEFAULT_DECODING


@pytest.mark.parametrize("name,members,decoding", [
    ("cfg_2_squeezeformer.yaml", 2, GREEDY_ATTENTION), ("cfg_2.yaml", 2, DEFAULT_DECODING)])
def test_fp16_ensembles_fit_by_their_weight_count(name, members, decoding):
    """The 1st place's pair in fp16 (attention: its config trains no CTC head) and two cfg_2
    members with joint decoding: 2 bytes a serving weight, with the converter's margin, stay
    under the limit (the fp16 file is smaller than that: `tflite.FP16_MARGIN`)."""
    model = build_recognizer(config.load(config_path(name)))
    size = 2 * tflite.serving_weights([model] * members, decoding)
    assert size * tflite.FP16_MARGIN < tflite.SIZE_LIMIT, size


def test_zipformer_training_machinery_leaves_no_trace_in_the_export():
    """Stacks with downsampling export and match Keras; Balancer/Whitener, skips and CTC head
    add no op (the op set equals that of the same model without them)."""
    base = {**TINY["model"], "blocks": 2, "stacks": [[1, 1, 32], [1, 2, 32]]}
    # a seed whose rigged random model decodes these clips to several phrases (with some seeds
    # it decodes every clip to nothing, and the comparison below would prove little)
    keras.utils.set_random_seed(1)
    plain = build_recognizer(config.from_dict(config.Config, {"data": TINY["data"],
                                                              "model": base}))
    keras.utils.set_random_seed(1)
    full = build_recognizer(config.from_dict(config.Config, {
        "data": TINY["data"], "model": {**base, "constraints": True, "ctc_loss_weight": 0.3}}))
    from tests.export import rig

    rig([full])
    ops_full = tflite.operator_names(tflite.convert([full], MAX_LEN, weights="fp32"))
    ops_plain = tflite.operator_names(tflite.convert([plain], MAX_LEN, weights="fp32"))
    assert ops_full == ops_plain
    assert not {op for op in ops_full if "RANDOM" in op or "MULTINOMIAL" in op}
    run = tflite.runner(tflite.convert([full], MAX_LEN, weights="fp32"))
    clips = signing_clips(16, seed=4)
    reference = tflite.keras_texts([full], MAX_LEN, clips)
    assert_meaningful(reference, 8)
    assert [tflite.tflite_text(run, c) for c in clips] == reference


def subgraph_of(model: bytes, op: str) -> list[str]:
    """Names of the subgraphs that contain operator `op`."""
    from ai_edge_litert import schema_py_generated as schema

    code = getattr(schema.BuiltinOperator, op)
    root = schema.Model.GetRootAs(model, 0)
    codes = [max(c.BuiltinCode(), c.DeprecatedBuiltinCode())
             for c in map(root.OperatorCodes, range(root.OperatorCodesLength()))]
    names = []
    for i in range(root.SubgraphsLength()):
        graph = root.Subgraphs(i)
        if any(codes[graph.Operators(j).OpcodeIndex()] == code
               for j in range(graph.OperatorsLength())):
            names.append(graph.Name().decode())
    return names


def test_encoders_and_decoding_loop_run_outside_any_conditional(fp32):
    """LiteRT runs ops inside IF branches several times slower: the WHILE and the encoders'
    convolutions sit in the main subgraph, and every IF left is small (docs/tflite.md)."""
    with open(model_path(fp32), "rb") as f:
        model = f.read()
    assert subgraph_of(model, "WHILE") == ["main"]
    assert subgraph_of(model, "CONV_2D") == ["main"]
    ops = tflite.subgraph_operators(model)
    branches = [name for name in ops if "while" not in name and name != "main"]
    assert all(ops[name] <= 2 for name in branches), ops


def test_a_padding_dependent_encoder_is_exported_and_checked_at_real_length():
    """The reference conv module lets padding leak into real frames: the serving graph
    encodes each clip's own frames, and keras_texts does the same, so fp32 strings agree."""
    cfg = config.from_dict(config.Config, {
        "data": TINY["data"],
        "model": {"encoder": "squeezeformer", "dim": 32, "blocks": 1, "kernel_size": 9,
                  "decoder_layers": 1, "decoder_ffn": 64, "confidence_head": False}})
    keras.utils.set_random_seed(1)  # a seed whose rigged model decodes several phrases
    model = build_recognizer(cfg)
    assert not model.padding_invariant
    # Keras initialises biases at 0, and a zero bias before the GLU keeps padded frames at 0
    # there; trained biases are not 0, so give them values before rigging (no confidence
    # head: the rig calibrates it on padded clips)
    rng = np.random.default_rng(0)
    for variable in model.encoder.weights:
        if variable.path.endswith("bias"):
            variable.assign(rng.normal(0, 1.0, variable.shape))
    from tests.export import rig

    rig([model])
    clips = signing_clips(24, seed=5)
    # padding changes this encoder's output on real frames, so the length really matters
    short = min(clips, key=len)
    x, mask = tflite.encoder_inputs(tf.constant(short), MAX_LEN)
    real = x.shape[1]
    padded_x, padded_mask = preprocess.preprocess(tf.constant(short), MAX_LEN)
    assert real == len(short) < MAX_LEN
    gap = np.abs(model.encode(x, mask)[0]
                 - model.encode(padded_x[None], padded_mask[None])[0, :real])
    assert float(np.max(gap)) > 1e-3
    run = tflite.runner(tflite.convert([model], MAX_LEN, weights="fp32"))
    reference = tflite.keras_texts([model], MAX_LEN, clips)
    assert_meaningful(reference, 8)
    assert [tflite.tflite_text(run, c) for c in clips] == reference
