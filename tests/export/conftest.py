"""Session fixtures of the export tests: the tiny rigged ensemble's fp32, fp16 and int8
exports (greedy attention decoding) and its fp32 exports in the other decoding modes, each made
once per run (`built_once`: the first test process that needs one makes it, the others wait)
and shared read-only by every test (the checkpoints themselves are in the root conftest.py:
the benchmark's tests use them too)."""

from __future__ import annotations

import pytest

from asl_keras import config
from asl_keras.decoding import GREEDY_ATTENTION, Decoding
from asl_keras.export import tflite
from tests.conftest import built_once
from tests.export import TINY


@pytest.fixture(scope="session")
def fp32(checkpoints, export_root) -> str:
    """Folder with model.tflite + inference_args.json + submission.zip of the rigged ensemble
    (greedy attention decoding), exported through the command line (`export_tflite.main`,
    parity on 20 sample clips included)."""
    import export_tflite

    cfg_path, paths = checkpoints

    def build(out: str) -> None:
        assert export_tflite.main(["--config", cfg_path, "--checkpoints", *paths, "--out", out,
                                   "--no-fp16", "--decoding", "attention", "--submission",
                                   "--check-clips", "20"]) == 0

    return built_once(export_root, "fp32", build)


@pytest.fixture(scope="session")
def fp16(checkpoints, export_root) -> str:
    """The same files in fp16, through `tflite.export` without the built-in parity (its bars
    are for trained models; the fp16 tests measure agreement themselves)."""
    cfg_path, paths = checkpoints
    return built_once(export_root, "fp16", lambda out: tflite.export(
        cfg_path, paths, out, weights="fp16", make_submission=True, check_clips=0,
        decoding=GREEDY_ATTENTION))


@pytest.fixture(scope="session")
def int8(checkpoints, export_root) -> str:
    """The same files with int8 weights (dynamic-range quantisation), no built-in parity."""
    cfg_path, paths = checkpoints
    return built_once(export_root, "int8", lambda out: tflite.export(
        cfg_path, paths, out, weights="int8", check_clips=0, decoding=GREEDY_ATTENTION))


# The decoding modes besides the default (attention, greedy), as the export tests run them.
DECODING_MODES = {"ctc": Decoding("ctc"), "joint": Decoding("joint"),
                  "attention-beam4": Decoding("attention", beam=4),
                  "joint-beam4": Decoding("joint", beam=4)}


@pytest.fixture(scope="session")
def mode_export(checkpoints, export_root):
    """`mode_export(name)`: the rigged ensemble's fp32 flatbuffer with the decoding mode
    DECODING_MODES[name], converted on first use in the run."""
    cfg_path, paths = checkpoints

    def build(path: str, name: str) -> None:
        models = tflite.load_models(config.load(cfg_path), paths)
        flatbuffer = tflite.convert(models, TINY["data"]["max_len"], "fp32",
                                    DECODING_MODES[name])
        with open(path, "wb") as f:
            f.write(flatbuffer)

    def get(name: str) -> bytes:
        path = built_once(export_root, f"mode_{name}.tflite", lambda p: build(p, name))
        with open(path, "rb") as f:
            return f.read()

    return get
