"""Import of 1st-place PyTorch weights (state_dict) into the Keras layers.

Generic part: `load_state_dict` (a `.npz`, e.g. the `sd/...` fixtures, or a `.pth` when PyTorch
is installed; bare or wrapped as the 1st place's train.py saves it, see `state_dict_arrays`),
weight plans (`linear_entries`, `norm_entries`) and `assign`, which checks the whole plan before
writing anything and names every missing, unused or mis-shaped key.
Decoder part: `decoder_kwargs` (HF `Speech2TextConfig` fields -> `ReferenceDecoder` arguments)
and `import_decoder`. Whole model: `import_recognizer` (feature extractors, Squeezeformer blocks,
both decoders, confidence head). PyTorch `nn.Linear.weight` is `[out, in]`; a Keras kernel is
its transpose.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping

import keras
import numpy as np

from asl_keras import vocab
from asl_keras.layers.decoder import ReferenceDecoder, sinusoidal_positions
from asl_keras.layers.feature_extractor import LandmarkFeatureExtractor
from asl_keras.layers.squeezeformer import MODULES, SqueezeformerBlock
from asl_keras.models.recognizer import Recognizer
from asl_keras.runtime import tf

CHECKPOINT_SUFFIXES = (".npz", ".pth", ".pt")  # files `load_state_dict` reads
FIXTURE_PREFIX = "sd/"  # state_dict entries in the reference fixtures' .npz files
# Key prefixes that mark the state_dict inside a flat file: the fixtures' `sd/` (next to their
# inputs and outputs), and `model.`, what flattening the 1st place's `{"model": state_dict}`
# into one `.npz` gives. No key of the reference `Net` starts with either.
WRAPPER_PREFIXES = (FIXTURE_PREFIX, "model.")
SHOWN_KEYS = 10  # keys named in a WeightImportError about the layout


class WeightImportError(ValueError):
    """A state_dict that does not fit the Keras layer; the message names the keys."""


def _is_tensor(value) -> bool:
    """A torch tensor (without importing torch) or a numpy array."""
    return hasattr(value, "detach") or isinstance(value, np.ndarray)


def _to_numpy(value) -> np.ndarray:
    """A torch tensor (on any device) or array as a numpy array of the same dtype."""
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def state_dict_arrays(obj) -> dict[str, np.ndarray]:
    """`{PyTorch key: numpy array}` from what a checkpoint file holds.

    Accepted layouts: a state_dict (names -> torch tensors or numpy arrays); the 1st place's own
    `{"model": state_dict}` (its train.py saves that; other top-level entries such as an epoch
    are ignored); a flat mapping whose state_dict keys carry one of WRAPPER_PREFIXES (only
    those keys are read, without the prefix). Anything else raises WeightImportError naming
    the keys found, so a checkpoint of another layout says what it holds.
    """
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping):
        raise WeightImportError("expected a state_dict (parameter names -> tensors) or "
                                f"{{'model': state_dict}}, found a {type(obj).__name__}")
    for prefix in WRAPPER_PREFIXES:
        if any(str(k).startswith(prefix) for k in obj):
            obj = {str(k).removeprefix(prefix): v for k, v in obj.items()
                   if str(k).startswith(prefix)}
            break
    others = sorted(f"{k!s} ({type(v).__name__})" for k, v in obj.items() if not _is_tensor(v))
    if not obj or others:
        keys = sorted(map(str, obj))
        more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
        raise WeightImportError(
            "expected a state_dict (parameter names -> tensors) or {'model': state_dict}; found "
            f"{len(keys)} keys {keys[:SHOWN_KEYS]}{more}, not tensors: {others[:SHOWN_KEYS]}")
    return {str(k): _to_numpy(v) for k, v in obj.items()}


def load_state_dict(path: str) -> dict[str, np.ndarray]:
    """`{PyTorch key: array}` from a `.npz` or a `.pth`/`.pt`, in any `state_dict_arrays` layout.

    Read through `tf.io.gfile` (so `gs://` and `ram://` paths work). Reading `.pth` needs
    PyTorch, which is optional: without it this raises an ImportError that says how to convert
    the file to `.npz`.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in CHECKPOINT_SUFFIXES:
        raise ValueError(f"{path}: expected a .npz, .pth or .pt state_dict")
    if ext != ".npz":
        try:
            import torch
        except ImportError as err:
            raise ImportError(
                f"reading {path} needs PyTorch, which asl_keras does not require; install torch "
                "or convert it elsewhere: state = torch.load(path, map_location='cpu'); state = "
                "state.get('model', state); np.savez(out, **{k: v.numpy() for k, v in "
                "state.items()})") from err
    with tf.io.gfile.GFile(path, "rb") as f:
        data = io.BytesIO(f.read())
    if ext == ".npz":
        with np.load(data) as npz:
            return state_dict_arrays({k: npz[k] for k in npz.files})
    return state_dict_arrays(torch.load(data, map_location="cpu", weights_only=True))


# A plan maps a PyTorch key (without prefix) to (Keras variable, transform of the array).
Plan = dict[str, tuple[object, Callable[[np.ndarray], np.ndarray] | None]]


def linear_entries(key: str, dense) -> Plan:
    """`nn.Linear` `key.weight` [out, in] (+ `key.bias`) -> Dense kernel [in, out] (+ bias)."""
    plan: Plan = {f"{key}.weight": (dense.kernel, np.transpose)}
    if dense.use_bias:
        plan[f"{key}.bias"] = (dense.bias, None)
    return plan


def norm_entries(key: str, norm) -> Plan:
    """`nn.LayerNorm` weight/bias -> Keras LayerNormalization gamma/beta."""
    return {f"{key}.weight": (norm.gamma, None), f"{key}.bias": (norm.beta, None)}


def assign(state_dict: dict[str, np.ndarray], prefix: str, plan: Plan,
           checks: dict[str, tuple[np.ndarray, float]] | None = None) -> None:
    """Write every plan entry `prefix + key`; all keys under `prefix` must be used.

    `checks` maps keys of constant buffers (not Keras weights) to (expected array, atol).
    Raises WeightImportError listing missing, unused, mis-shaped and mismatching keys, before
    any variable is written.
    """
    checks = checks or {}
    wanted = set(plan) | set(checks)
    given = {k.removeprefix(prefix) for k in state_dict if k.startswith(prefix)}
    problems = [f"missing {prefix}{k}" for k in sorted(wanted - given)]
    problems += [f"unused {prefix}{k}" for k in sorted(given - wanted)]
    values = {}
    for key, (variable, transform) in plan.items():
        if key not in given:
            continue
        value = np.asarray(state_dict[prefix + key], dtype=np.float32)
        value = transform(value) if transform else value
        if tuple(value.shape) != tuple(variable.shape):
            problems.append(f"mis-shaped {prefix}{key}: {tuple(state_dict[prefix + key].shape)} "
                            f"gives {tuple(value.shape)}, expected {tuple(variable.shape)}")
        values[key] = value
    for key, (expected, atol) in checks.items():
        if key in given:
            value = np.asarray(state_dict[prefix + key], dtype=np.float32)
            if value.shape != expected.shape or not np.allclose(value, expected, atol=atol):
                problems.append(f"mismatching {prefix}{key}: shape {value.shape}, expected "
                                f"{expected.shape} and the values computed here")
    if problems:
        raise WeightImportError("state_dict does not fit: " + "; ".join(problems))
    for key, value in values.items():
        plan[key][0].assign(value)


def decoder_kwargs(transformer_config: dict) -> dict:
    """`ReferenceDecoder` arguments from the reference's `Speech2TextConfig` fields.

    Raises WeightImportError if the config differs from what `ReferenceDecoder` implements
    (vocabulary and special ids, ReLU, scaled embeddings).
    """
    c = transformer_config
    fixed = {"vocab_size": vocab.VOCAB_SIZE, "pad_token_id": vocab.PAD,
             "decoder_start_token_id": vocab.SOS, "eos_token_id": vocab.EOS,
             "activation_function": "relu", "scale_embedding": True}
    wrong = {k: c[k] for k, v in fixed.items() if k in c and c[k] != v}
    if wrong:
        raise WeightImportError(f"decoder config differs from the implemented one: {wrong}")
    return {"d_model": c["d_model"], "num_layers": c["decoder_layers"],
            "num_heads": c["decoder_attention_heads"], "ffn_dim": c["decoder_ffn_dim"],
            "max_positions": c["max_target_positions"], "dropout": c["dropout"],
            "attention_dropout": c["attention_dropout"],
            "activation_dropout": c["activation_dropout"]}


def decoder_plan(decoder: ReferenceDecoder) -> Plan:
    """Plan of a reference `Decoder` module (`decoder.*` HF decoder + `lm_head`)."""
    plan: Plan = {"decoder.embed_tokens.weight": (decoder.embed_tokens, None)}
    for i, layer in enumerate(decoder.decoder_layers):
        key = f"decoder.layers.{i}"
        for attn in ("self_attn", "encoder_attn"):
            module = getattr(layer, attn)
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                plan.update(linear_entries(f"{key}.{attn}.{proj}", getattr(module, proj)))
        for name in ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"):
            plan.update(norm_entries(f"{key}.{name}", getattr(layer, name)))
        plan.update(linear_entries(f"{key}.fc1", layer.fc1))
        plan.update(linear_entries(f"{key}.fc2", layer.fc2))
    plan.update(norm_entries("decoder.layer_norm", decoder.layer_norm))
    plan.update(linear_entries("lm_head", decoder.lm_head))
    return plan


def import_decoder(decoder: ReferenceDecoder, state_dict: dict[str, np.ndarray],
                   prefix: str = "decoder.") -> None:
    """Load the reference `Decoder` under `prefix` (`decoder.`, or `decoder2.` for cfg_2's
    backward decoder) into `decoder` (built here if needed).

    The stored sinusoidal table `decoder.embed_positions.weights` is not a weight here (it is
    computed on the fly); it is checked against that computation instead (atol 1e-3: float32
    sin/cos of arguments up to ~1000 rad differ by ~1e-4 between libraries, while a wrong
    layout or size differs by O(1)).
    """
    if not decoder.built:
        decoder.build()
    rows = np.arange(decoder.max_positions + 2)
    table = keras.ops.convert_to_numpy(sinusoidal_positions(rows, decoder.d_model))
    assign(state_dict, prefix, decoder_plan(decoder),
           checks={"decoder.embed_positions.weights": (table, 1e-3)})


# ------------------------------------------------------------------ encoder side


def batchnorm_entries(key: str, bn) -> Plan:
    """BatchNorm weight/bias/running stats -> gamma/beta/moving stats."""
    return {f"{key}.weight": (bn.gamma, None), f"{key}.bias": (bn.beta, None),
            f"{key}.running_mean": (bn.moving_mean, None),
            f"{key}.running_var": (bn.moving_variance, None)}


def feature_extractor_plan(key: str, fe: LandmarkFeatureExtractor) -> Plan:
    """Conv2d `[out, in, kh, kw]` -> Conv2D `[kh, kw, in, out]`; BNs; bias-free stem linear."""
    return {f"{key}.conv_stem.weight": (fe.conv.kernel, lambda w: w.transpose(2, 3, 1, 0)),
            **batchnorm_entries(f"{key}.bn_conv", fe.bn_conv),
            **linear_entries(f"{key}.stem_linear", fe.linear),
            **batchnorm_entries(f"{key}.stem_bn", fe.bn)}


def _pointwise(key: str, dense) -> Plan:
    """Conv1d kernel size 1 `[out, in, 1]` (+ bias) -> Dense."""
    return {f"{key}.conv.weight": (dense.kernel, lambda w: w[:, :, 0].T),
            f"{key}.conv.bias": (dense.bias, None)}


def squeezeformer_block_plan(key: str, block: SqueezeformerBlock) -> Plan:
    plan: Plan = {}
    for m in MODULES:
        plan[f"{key}.scale_{m}"] = (block.scales[m], lambda w: w.reshape(-1))
        plan[f"{key}.bias_{m}"] = (block.biases[m], lambda w: w.reshape(-1))
        plan.update(norm_entries(f"{key}.ln_{m}", block.norms[m]))
    for ff in ("ff_mhsa", "ff_conv"):
        for d in ("ffn1", "ffn2"):
            plan.update(linear_entries(f"{key}.{ff}.{d}", getattr(getattr(block, ff), d)))
    conv = block.conv
    plan.update(_pointwise(f"{key}.conv.pw_conv_1", conv.pw1))
    plan.update(_pointwise(f"{key}.conv.pw_conv_2", conv.pw2))
    plan[f"{key}.conv.dw_conv.conv.weight"] = (conv.dw.kernel, lambda w: w.transpose(2, 0, 1))
    plan.update(batchnorm_entries(f"{key}.conv.bn", conv.bn))
    a = block.mhsa
    if block.attention == "rotary":
        for d in "qkvo":
            plan.update(linear_entries(f"{key}.mhsa_llama.{d}_proj", getattr(a, d)))
    else:
        att = f"{key}.mhsa.attention"
        for d, name in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out"),
                        ("pos", "pos")):
            plan.update(linear_entries(f"{att}.{name}_proj", getattr(a, d)))
        plan[f"{att}.u_bias"] = (a.u_bias, None)
        plan[f"{att}.v_bias"] = (a.v_bias, None)
    return plan


def rotary_tables(head_dim: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference's frozen `cos`/`sin` parameters `[1, 1, length, head_dim]` (rotate-half)."""
    inv = 1.0 / (10000 ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    angles = np.arange(length)[:, None] * inv[None, :]
    emb = np.concatenate([angles, angles], axis=-1)[None, None]
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def recognizer_plan(model: Recognizer) -> Plan:
    """The whole reference `Net` state_dict (mdl_1 or mdl_2) -> a Squeezeformer Recognizer."""
    plan = feature_extractor_plan("feature_extractor", model.embedding.all)
    for name, fe in zip(("lhand", "rhand", "face", "pose"), model.embedding.part_extractors,
                        strict=False):
        plan.update(feature_extractor_plan(f"feature_extractor_{name}", fe))
    for i, block in enumerate(model.encoder.blocks):
        plan.update(squeezeformer_block_plan(f"encoder.blocks.{i}", block))
    for prefix, d in (("decoder.", model.decoder), ("decoder2.", model.backward_decoder)):
        if d is not None:
            plan.update({prefix + k: v for k, v in decoder_plan(d).items()})
    if model.confidence_head is not None:
        plan.update(linear_entries("aux_fc", model.confidence_head))
    return plan


def import_recognizer(model: Recognizer, state_dict: dict[str, np.ndarray]) -> None:
    """Load a whole 1st-place checkpoint (cfg_1 or cfg_2 `Net`) into a Squeezeformer model.

    Constant tables of the reference (rotary `cos`/`sin`, the decoders' sinusoidal positions)
    are checked against what the Keras layers compute rather than loaded.
    """
    if model.cfg.encoder != "squeezeformer":
        raise WeightImportError("1st-place checkpoints hold a Squeezeformer encoder; this model "
                                f"has a {model.cfg.encoder!r} encoder")
    plan = recognizer_plan(model)
    checks = {}
    ignored = {k for k in state_dict if k.endswith("num_batches_tracked")}  # training counter
    if model.cfg.attention == "rotary" and "cos" in state_dict:
        cos, sin = rotary_tables(model.cfg.dim // model.cfg.heads, state_dict["cos"].shape[2])
        checks.update({"cos": (cos, 1e-4), "sin": (sin, 1e-4)})
    for prefix, d in (("decoder.", model.decoder), ("decoder2.", model.backward_decoder)):
        if d is not None:
            rows = np.arange(d.max_positions + 2)
            table = keras.ops.convert_to_numpy(sinusoidal_positions(rows, d.d_model))
            checks[f"{prefix}decoder.embed_positions.weights"] = (table, 1e-3)
    assign({k: v for k, v in state_dict.items() if k not in ignored}, "", plan, checks)
