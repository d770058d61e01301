"""Session fixtures of the export tests: the tiny rigged ensemble's checkpoints, its fp32, fp16
and int8 exports (greedy attention decoding) and its fp32 exports in the other decoding modes,
each made once per session and shared read-only by every test."""

from __future__ import annotations

import os

import keras
import pytest

from asl_keras import config
from asl_keras.decoding import GREEDY_ATTENTION, Decoding
from asl_keras.export import tflite
from asl_keras.models.recognizer import build_recognizer
from tests.export import TINY, rig, write_config


@pytest.fixture(scope="session")
def export_root(tmp_path_factory) -> str:
    """The session's folder for the checkpoints and exports below."""
    return str(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def checkpoints(export_root) -> tuple[str, list[str]]:
    """(config path, 2 rigged `.weights.h5`)."""
    # data.records names a folder that does not exist: exports check on synthetic clips
    # unless a test gives records, whatever the working directory holds
    values = {**TINY, "data": {**TINY["data"],
                               "records": os.path.join(export_root, "no-records")}}
    cfg_path = write_config(os.path.join(export_root, "tiny.yaml"), values)
    models = []
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        models.append(build_recognizer(config.load(cfg_path)))
    rig(models)
    paths = []
    for seed, model in enumerate(models):
        paths.append(os.path.join(export_root, f"tiny_{seed}.weights.h5"))
        model.save_weights(paths[-1])
    return cfg_path, paths


@pytest.fixture(scope="session")
def fp32(checkpoints, export_root) -> str:
    """Folder with model.tflite + inference_args.json + submission.zip of the rigged ensemble
    (greedy attention decoding), exported through the command line (`export_tflite.main`,
    parity on 20 synthetic clips included)."""
    import export_tflite

    cfg_path, paths = checkpoints
    out = os.path.join(export_root, "fp32")
    assert export_tflite.main(["--config", cfg_path, "--checkpoints", *paths, "--out", out,
                               "--no-fp16", "--decoding", "attention", "--submission",
                               "--check-clips", "20"]) == 0
    return out


@pytest.fixture(scope="session")
def fp16(checkpoints, export_root) -> str:
    """The same files in fp16, through `tflite.export` without the built-in parity (its bars
    are for trained models; the fp16 tests measure agreement themselves)."""
    cfg_path, paths = checkpoints
    out = os.path.join(export_root, "fp16")
    tflite.export(cfg_path, paths, out, weights="fp16", make_submission=True, check_clips=0,
                  decoding=GREEDY_ATTENTION)
    return out


@pytest.fixture(scope="session")
def int8(checkpoints, export_root) -> str:
    """The same files with int8 weights (dynamic-range quantisation), no built-in parity."""
    cfg_path, paths = checkpoints
    out = os.path.join(export_root, "int8")
    tflite.export(cfg_path, paths, out, weights="int8", check_clips=0,
                  decoding=GREEDY_ATTENTION)
    return out


# The decoding modes besides the default (attention, greedy), as the export tests run them.
DECODING_MODES = {"ctc": Decoding("ctc"), "joint": Decoding("joint"),
                  "attention-beam4": Decoding("attention", beam=4),
                  "joint-beam4": Decoding("joint", beam=4)}


@pytest.fixture(scope="session")
def mode_export(checkpoints):
    """`mode_export(name)`: the rigged ensemble's fp32 flatbuffer with the decoding mode
    DECODING_MODES[name], converted on first use and kept for the session."""
    cfg_path, paths = checkpoints
    models = tflite.load_models(config.load(cfg_path), paths)
    made = {}

    def get(name: str) -> bytes:
        if name not in made:
            made[name] = tflite.convert(models, TINY["data"]["max_len"], "fp32",
                                        DECODING_MODES[name])
        return made[name]

    return get
