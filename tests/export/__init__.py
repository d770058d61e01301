"""Shared fixtures of the export tests: tiny random checkpoints, rigged so that token
comparisons mean something, and their fp32/fp16 exports (converted once per session).

Why rig: a randomly initialised decoder ignores its input (the positional and token paths
dominate the residual stream, so every clip decodes to the same 33 characters) and its 63
logits are near-ties (top-2 gaps down to 3e-5 of their spread). Equal tokens would then prove
little, and rare flips would make tests flaky. `rig` therefore
1. multiplies each decoder layer's cross-attention output projection by 10, so the clip
   reaches the tokens (about a third of the clips decode differently from their neighbours);
2. keeps 12 letters and EOS in `lm_head` (other columns 0, the kept ones x3, EOS x6): the
   smallest top-2 gap grows to ~5e-4 of the spread (TFLite/TF float32 differences are ~1e-6)
   and most clips stop at EOS at a clip-dependent step, which exercises the early stop;
3. shifts the confidence bias so that the 0.15 threshold falls in the widest gap of the
   calibration clips' mean confidence logits between their 20th and 50th percentile: about a
   third of the clips get the dummy phrase through the unsure rule, with a clear margin.
"""

from __future__ import annotations

import math
import os

import keras
import numpy as np
import yaml

from asl_keras import config, vocab
from asl_keras.data import preprocess
from asl_keras.export import tflite
from asl_keras.inference import MIN_CONFIDENCE
from asl_keras.models.recognizer import build_recognizer

TINY = {"name": "tiny", "data": {"max_len": 96},
        "model": {"encoder": "zipformer", "dim": 32, "blocks": 1, "ffn_dims": [24, 32, 40],
                  "kernel_size": 9, "decoder_layers": 1, "decoder_ffn": 64}}
LETTERS = [vocab.CHAR_TO_ID[c] for c in "abcdefghijkl"]
CALIBRATION_CLIPS = 40  # `tflite.sample_sequences(40)` (seed 0): the clips the rig is tuned on
_CACHE: dict = {}


def write_config(path, values=TINY) -> str:
    """A run config YAML at `path`; returns the path as a string."""
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(values, f)
    return str(path)


def _confidence_logits(models, clips) -> np.ndarray:
    """Mean confidence logit of the ensemble per clip `[N]`."""
    max_len = TINY["data"]["max_len"]
    x, mask = map(np.stack, zip(*(preprocess.preprocess(c, max_len) for c in clips),
                                strict=True))
    return np.mean([np.asarray(m.confidence(m.encode(x, mask))) for m in models], axis=0)


def rig(models) -> None:
    """Make the random ensemble clip-dependent with clear margins (module docstring)."""
    for model in models:
        for layer in model.decoder.decoder_layers:
            out = layer.encoder_attn.out_proj.kernel
            out.assign(out * 10.0)
        head = np.zeros(model.decoder.lm_head.kernel.shape, np.float32)
        keep = [*LETTERS, vocab.EOS]
        head[:, keep] = 3.0 * model.decoder.lm_head.kernel.numpy()[:, keep]
        head[:, vocab.EOS] *= 2.0
        model.decoder.lm_head.kernel.assign(head)
    if any(model.confidence_head is None for model in models):
        return  # step 3 only for models with a confidence head
    logits = np.sort(_confidence_logits(models, tflite.sample_sequences(CALIBRATION_CLIPS)))
    lo, hi = int(0.2 * len(logits)), int(0.5 * len(logits))
    k = lo + int(np.argmax(np.diff(logits[lo:hi + 1])))
    threshold = (logits[k] + logits[k + 1]) / 2
    shift = math.log(MIN_CONFIDENCE / (1 - MIN_CONFIDENCE)) - threshold
    for model in models:
        bias = model.confidence_head.bias
        bias.assign(bias + shift)


def _root(tmp_path_factory) -> str:
    root = tmp_path_factory.getbasetemp() / "export"
    root.mkdir(exist_ok=True)
    return str(root)


def checkpoints(tmp_path_factory) -> tuple[str, list[str]]:
    """(config path, 2 rigged `.weights.h5`), made once per session."""
    if "checkpoints" not in _CACHE:
        root = _root(tmp_path_factory)
        # data.records names a folder that does not exist: exports check on synthetic clips
        # unless a test gives records, whatever the working directory holds
        values = {**TINY, "data": {**TINY["data"], "records": os.path.join(root, "no-records")}}
        cfg_path = write_config(os.path.join(root, "tiny.yaml"), values)
        models = []
        for seed in (0, 1):
            keras.utils.set_random_seed(seed)
            models.append(build_recognizer(config.load(cfg_path)))
        rig(models)
        paths = []
        for seed, model in enumerate(models):
            paths.append(os.path.join(root, f"tiny_{seed}.weights.h5"))
            model.save_weights(paths[-1])
        _CACHE["checkpoints"] = cfg_path, paths
    return _CACHE["checkpoints"]


def exported(tmp_path_factory, fp16: bool) -> str:
    """Folder with model.tflite + inference_args.json + submission.zip of the rigged ensemble.

    fp32 goes through the command line (`export_tflite.main`, parity on 20 synthetic clips
    included); fp16 through `tflite.export` without the built-in parity (its bars are for
    trained models; the fp16 test measures agreement itself).
    """
    import export_tflite

    key = ("exported", fp16)
    if key not in _CACHE:
        cfg_path, paths = checkpoints(tmp_path_factory)
        out = os.path.join(_root(tmp_path_factory), "fp16" if fp16 else "fp32")
        if fp16:
            tflite.export(cfg_path, paths, out, fp16=True, make_submission=True,
                          check_clips=0)
        else:
            assert export_tflite.main(["--config", cfg_path, "--checkpoints", *paths,
                                       "--out", out, "--no-fp16", "--submission",
                                       "--check-clips", "20"]) == 0
        _CACHE[key] = out
    return _CACHE[key]
