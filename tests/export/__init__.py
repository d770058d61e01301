"""What the export tests share: the tiny config and the rig that makes its random checkpoints
worth comparing token by token (the session fixtures that make and export them once are in
`conftest.py`).

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
   third of the clips get the dummy phrase through the unsure rule, with a clear margin;
4. keeps the same 12 letters and the blank in the CTC head (x4; the other classes get a bias
   of -30, never chosen) and shifts the blank's bias so that it wins on ~70 % of the
   calibration clips' frames: best-path decoding then reads a few characters per clip, and the
   CTC and attention readings of a clip differ, so the decoding modes (`asl_keras.decoding`)
   give different strings and a test on them shows which mode ran.
"""

from __future__ import annotations

import math

import numpy as np
import yaml

from asl_keras import landmarks, vocab
from asl_keras.data import preprocess, synthetic
from asl_keras.inference import MIN_CONFIDENCE

TINY = {"name": "tiny", "data": {"max_len": 96},
        "model": {"encoder": "zipformer", "dim": 32, "blocks": 1, "ffn_dims": [24, 32, 40],
                  "kernel_size": 9, "decoder_layers": 1, "decoder_ffn": 64,
                  "ctc_loss_weight": 0.3}}
LETTERS = [vocab.CHAR_TO_ID[c] for c in "abcdefghijkl"]
CALIBRATION_CLIPS = 40  # `signing_clips(40)` (seed 0): the clips the rig is tuned on


def signing_clips(count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` clips `[T, 390]` (SELECTED_COLUMNS order) of the synthetic data generator:
    phrases of the competition kind, random signers. The rig is tuned on them: their
    fingerspelling motion makes the rigged models read each clip differently, where the
    export's own `landmarks.sample_clips` only need to be valid input."""
    position = {c: i for i, c in enumerate(landmarks.raw_columns())}
    columns = [position[c] for c in landmarks.SELECTED_COLUMNS]
    rng = np.random.default_rng(seed)
    return [synthetic.render_sequence(synthetic.train_phrase(rng), int(rng.integers(255)),
                                      rng)[0][:, columns] for _ in range(count)]


def write_config(path, values=TINY) -> str:
    """A run config YAML at `path`; returns the path as a string."""
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(values, f)
    return str(path)


def _encoded(models, clips):
    """Per model the encoder output `[N, T, d]` of `clips`, and their mask `[N, T]`."""
    max_len = TINY["data"]["max_len"]
    x, mask = map(np.stack, zip(*(preprocess.preprocess(c, max_len) for c in clips),
                                strict=True))
    return [m.encode(x, mask) for m in models], mask


def _rig_ctc(models, clips) -> None:
    """Step 4 of the module docstring."""
    keep = [*LETTERS, vocab.CTC_BLANK]
    for model in models:
        kernel = np.zeros(model.ctc_head.kernel.shape, np.float32)
        kernel[:, keep] = 4.0 * model.ctc_head.kernel.numpy()[:, keep]
        model.ctc_head.kernel.assign(kernel)
        bias = np.full(model.ctc_head.bias.shape, -30.0, np.float32)
        bias[keep] = 0.0
        model.ctc_head.bias.assign(bias)
    encoded, mask = _encoded(models, clips)
    logits = np.mean([m.ctc_logits(e).numpy() for m, e in zip(models, encoded, strict=True)], 0)
    margin = logits[..., vocab.CTC_BLANK] - logits[..., LETTERS].max(-1)
    shift = np.quantile(margin[mask > 0], 0.3)
    for model in models:
        bias = model.ctc_head.bias.numpy()
        bias[vocab.CTC_BLANK] -= shift
        model.ctc_head.bias.assign(bias)


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
    clips = signing_clips(CALIBRATION_CLIPS)
    if all(model.ctc_head is not None for model in models):
        _rig_ctc(models, clips)
    if any(model.confidence_head is None for model in models):
        return  # step 3 only for models with a confidence head
    encoded, _ = _encoded(models, clips)
    logits = np.sort(np.mean([np.asarray(m.confidence(e))
                              for m, e in zip(models, encoded, strict=True)], axis=0))
    lo, hi = int(0.2 * len(logits)), int(0.5 * len(logits))
    k = lo + int(np.argmax(np.diff(logits[lo:hi + 1])))
    threshold = (logits[k] + logits[k + 1]) / 2
    shift = math.log(MIN_CONFIDENCE / (1 - MIN_CONFIDENCE)) - threshold
    for model in models:
        bias = model.confidence_head.bias
        bias.assign(bias + shift)
