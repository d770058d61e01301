"""Typed configuration: dataclasses filled from YAML, validated on load.

YAML in `configs/` only sets values; every key must name a field here (a misspelling is an
error naming the full key path) and values are type- and range-checked. Command-line overrides
use the same paths: `data.max_len=256`.

A YAML file may start from another: `base: cfg_2.yaml` (relative to the file's own folder)
takes that file's resolved values, then this file's keys on top, merging mappings key by key
(lists and scalars replace). A base may have a base of its own (`read_yaml`).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
import types
import typing
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config key or value that does not fit the schema; the message names the key path."""


def _check(cond: bool, path: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{path}: {msg}")


def _range(path: str, lo_hi, lo=None, hi=None) -> None:
    _check(len(lo_hi) == 2 and lo_hi[0] <= lo_hi[1], path, f"expected [low, high], got {lo_hi}")
    _check(lo is None or lo_hi[0] >= lo, path, f"low must be >= {lo}")
    _check(hi is None or lo_hi[1] <= hi, path, f"high must be <= {hi}")


def _prob(path: str, p: float) -> None:
    _check(0.0 <= p <= 1.0, path, f"probability must be in [0, 1], got {p}")


@dataclasses.dataclass
class Resample:
    """Whole-sequence nearest resampling by a random rate (the reference's Resample;
    docs/reference.md, 'Augmentations')."""

    p: float = 0.0
    rate: tuple[float, float] = (0.3, 2.0)

    def validate(self, path):
        _prob(f"{path}.p", self.p)
        _range(f"{path}.rate", self.rate, lo=0.01)


@dataclasses.dataclass
class DynamicResample:
    """Per-chunk nearest resampling (docs/reference.md, 'Augmentations'); windows is an
    inclusive range."""

    p: float = 0.0
    windows: tuple[int, int] = (20, 29)
    rate: tuple[float, float] = (0.9, 1.1)

    def validate(self, path):
        _prob(f"{path}.p", self.p)
        _range(f"{path}.windows", self.windows, lo=1, hi=64)
        _range(f"{path}.rate", self.rate, lo=0.01)


@dataclasses.dataclass
class TimeShift:
    """Prepend zero frames or drop leading frames (docs/reference.md, 'Augmentations');
    inclusive shift range."""

    p: float = 0.0
    shift: tuple[int, int] = (-10, 9)

    def validate(self, path):
        _prob(f"{path}.p", self.p)
        _range(f"{path}.shift", self.shift, lo=-1000, hi=1000)


@dataclasses.dataclass
class Affine:
    """Scale, shear, rotation and shift of x, y (the reference's SpatialAffine;
    docs/reference.md, 'Augmentations')."""

    p: float = 0.0
    scale: tuple[float, float] = (0.7, 1.3)
    shear: tuple[float, float] = (-0.2, 0.2)
    degrees: tuple[float, float] = (-30.0, 30.0)
    shift: tuple[float, float] = (-0.15, 0.15)

    def validate(self, path):
        _prob(f"{path}.p", self.p)
        for name in ("scale", "shear", "degrees", "shift"):
            _range(f"{path}.{name}", getattr(self, name))


@dataclasses.dataclass
class FingersDrop:
    """Zero random fingers inside random time windows (docs/reference.md, 'Augmentations')."""

    p: float = 0.0
    windows: int = 2
    length: tuple[float, float] = (0.25, 0.5)  # window length as a fraction of the sequence
    draws: int = 12  # fingers drawn with replacement per window

    def validate(self, path):
        _prob(f"{path}.p", self.p)
        _check(1 <= self.windows <= 16, f"{path}.windows", "must be in 1..16")
        _range(f"{path}.length", self.length, lo=0.0, hi=1.0)
        _check(1 <= self.draws <= 64, f"{path}.draws", "must be in 1..64")


@dataclasses.dataclass
class PartDrop:
    """At most one of: drop pose (4 variants), face, or both hands (the reference's
    PoseDrop2 / FaceDrop / HandDrop2)."""

    pose: float = 0.0
    face: float = 0.0
    hands: float = 0.0

    def validate(self, path):
        for name in ("pose", "face", "hands"):
            _prob(f"{path}.{name}", getattr(self, name))
        _prob(f"{path} (sum)", self.pose + self.face + self.hands)


@dataclasses.dataclass
class TemporalMask:
    """Zero 1x[0.2,0.4], 2x[0.1,0.2] or 4x[0.05,0.1] of the frames (the reference's
    TemporalMask)."""

    p: float = 0.0
    variants: tuple[str, ...] = ("1:0.2-0.4", "2:0.1-0.2", "4:0.05-0.1")

    def validate(self, path):
        _prob(f"{path}.p", self.p)
        _check(len(self.variants) > 0, f"{path}.variants", "needs at least one variant")
        for v in self.variants:
            self.parse(v, f"{path}.variants")

    @staticmethod
    def parse(variant: str, path: str = "temporal_mask") -> tuple[int, float, float]:
        """'count:low-high' -> (count, low, high)."""
        try:
            count, rng = variant.split(":")
            lo, hi = (float(v) for v in rng.split("-"))
            out = int(count), lo, hi
        except ValueError as e:
            raise ConfigError(f"{path}: {variant!r} is not 'count:low-high'") from e
        _check(out[0] >= 1 and 0 <= lo <= hi <= 1, path, f"{variant!r} out of range")
        return out


@dataclasses.dataclass
class Augment:
    """The training augmentation recipe, applied in this field order after flip and CutMix.
    Every augmentation defaults to off (probability 0); the configs switch them on."""

    flip: float = 0.0
    cutmix: float = 0.0
    resample: Resample = dataclasses.field(default_factory=Resample)
    dynamic_resample: DynamicResample = dataclasses.field(default_factory=DynamicResample)
    time_shift: TimeShift = dataclasses.field(default_factory=TimeShift)
    affine: Affine = dataclasses.field(default_factory=Affine)
    fingers_drop: FingersDrop = dataclasses.field(default_factory=FingersDrop)
    part_drop: PartDrop = dataclasses.field(default_factory=PartDrop)
    temporal_mask: TemporalMask = dataclasses.field(default_factory=TemporalMask)
    decoder_mask: float = 0.0  # decoder-input token masking rate (applied in the model)

    def validate(self, path):
        for name in ("flip", "cutmix", "decoder_mask"):
            _prob(f"{path}.{name}", getattr(self, name))


@dataclasses.dataclass
class Synthetic:
    """A synthetic Kaggle-format data set to generate when `data.kaggle_dir` is absent."""

    train: int = 1200
    supplemental: int = 300
    participants: int = 16
    per_file: int = 200
    seed: int = 0
    # A preset of the generator's knobs (`asl_keras.data.synthetic.DIFFICULTIES`): "default"
    # or "hard" (co-articulation, signer variants, camera motion, occlusions, frame-rate
    # changes, a moving other hand).
    difficulty: str = "default"

    def validate(self, path):
        from asl_keras.data.synthetic import DIFFICULTIES  # numpy and pandas, no TensorFlow

        _check(self.train >= 8 and self.supplemental >= 0, path, "needs >= 8 train sequences")
        _check(self.participants >= 4, f"{path}.participants", "needs >= 4 (4 folds)")
        _check(self.per_file >= 1, f"{path}.per_file", "must be >= 1")
        _check(self.difficulty in DIFFICULTIES, f"{path}.difficulty",
               f"must be one of {', '.join(DIFFICULTIES)}, got {self.difficulty!r}")


@dataclasses.dataclass
class Data:
    """Where the records are and how batches are built."""

    records: str = "tfrecords/demo"
    kaggle_dir: str | None = None  # converted into `records` when those do not exist yet
    synthetic: Synthetic | None = None  # generated into `kaggle_dir` when that is missing
    # Several workers: only the chief generates and converts missing records; the others wait
    # this many seconds for its manifest (2 h: room for a full Kaggle conversion on a slow host).
    records_wait: float = 7200.0
    fold: int = 0  # held-out fold; -1 trains on everything
    max_len: int = 384
    buffer_len: int = 1024  # frames kept through the temporal augmentations (>= max_len)
    batch_size: int = 64  # per replica
    min_seq_len: int = 1  # training sequences shorter than this are dropped
    supplemental: bool = True  # add one sequence per unique supplemental phrase each epoch
    scores: str | None = None  # CSV sequence_id,score from round 1 (None: score 1.0)
    shuffle_buffer: int = 4096
    augment: Augment = dataclasses.field(default_factory=Augment)

    def validate(self, path):
        _check(self.fold >= -1, f"{path}.fold", "must be -1 (fullfit) or a fold number")
        _check(8 <= self.max_len <= 4096, f"{path}.max_len", "must be in 8..4096")
        _check(self.buffer_len >= self.max_len, f"{path}.buffer_len", "must be >= max_len")
        _check(self.batch_size >= 1, f"{path}.batch_size", "must be >= 1")
        _check(self.min_seq_len >= 1, f"{path}.min_seq_len", "must be >= 1")
        _check(self.shuffle_buffer >= 1, f"{path}.shuffle_buffer", "must be >= 1")
        _check(self.records_wait >= 0, f"{path}.records_wait", "must be >= 0 (seconds)")


_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _convert(tp, value, path: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, path)
    if origin is tuple:
        _check(isinstance(value, (list, tuple)), path, f"expected a list, got {value!r}")
        args = typing.get_args(tp)
        items = args[:1] * len(value) if args[-1] is Ellipsis else args
        _check(len(items) == len(value), path, f"expected {len(items)} values, got {value!r}")
        return tuple(_convert(t, v, f"{path}[{i}]")
                     for i, (t, v) in enumerate(zip(items, value, strict=True)))
    if tp is float:
        if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 6e-3 (no dot) as a string
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), path,
               f"expected a number, got {value!r}")
        return float(value)
    _check(isinstance(value, tp) and not (tp is int and isinstance(value, bool)), path,
           f"expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls, values: dict[str, Any] | None, path: str = ""):
    """Build dataclass `cls` from a mapping; unknown keys and bad values raise ConfigError."""
    values = values or {}
    _check(isinstance(values, dict), path or "config", f"expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(hints[k], v, f"{path}.{k}" if path else k) for k, v in values.items()}
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(path or cls.__name__.lower())
    return obj


BASE_KEY = "base"


def _remote(path: str) -> bool:
    return "://" in path


def _exists(path: str) -> bool:
    if _remote(path):
        from asl_keras.runtime import tf

        return tf.io.gfile.exists(path)
    return os.path.exists(path)


def _read_mapping(path: str) -> dict[str, Any]:
    """One YAML file's own mapping (an empty file is an empty mapping)."""
    if _remote(path):
        from asl_keras.runtime import tf

        stream = tf.io.gfile.GFile(path, "r")
    else:
        stream = open(path, encoding="utf-8")
    with stream as f:
        values = yaml.safe_load(f) or {}
    _check(isinstance(values, dict), path, f"expected a mapping, got {values!r}")
    return values


def _normpath(path: str) -> str:
    """`path` with `.`, `..` and doubled separators folded; a URL keeps its `scheme://` (which
    normalising the whole string would fold to `scheme:/`)."""
    if _remote(path):
        scheme, rest = path.split("://", 1)
        return f"{scheme}://{posixpath.normpath(rest)}"
    return os.path.normpath(path)


def _base_path(path: str, base: str) -> str:
    """The file that `base:` in the file at `path` names: relative to that file's folder unless
    it is a URL (or, in a local file, an absolute path)."""
    if _remote(base):
        return base
    if _remote(path):
        scheme, rest = path.split("://", 1)
        return _normpath(f"{scheme}://{posixpath.join(posixpath.dirname(rest), base)}")
    return _normpath(os.path.join(os.path.dirname(path), base))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over`'s keys on top; mappings in both merge, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _identity(path: str) -> str:
    """What the cycle check compares: real local paths (so `./a.yaml`, `a.yaml` and symlinks
    are one file), normalised URLs."""
    return _normpath(path) if _remote(path) else os.path.realpath(path)


def _resolve(path: str, chain: tuple[str, ...]) -> dict[str, Any]:
    """`read_yaml` for a file reached through `chain`, the files that named it as their base
    (so a cycle is an error naming them all)."""
    seen = [_identity(p) for p in chain]
    if _identity(path) in seen:
        cycle = " -> ".join([*chain[seen.index(_identity(path)):], path])
        raise ConfigError(f"{path}: base files form a cycle: {cycle}")
    values = _read_mapping(path)
    if BASE_KEY not in values:
        return values
    base = values.pop(BASE_KEY)
    _check(isinstance(base, str) and bool(base), f"{path}: {BASE_KEY}",
           f"expected a YAML file name, got {base!r}")
    base_path = _base_path(path, base)
    if not _exists(base_path):
        raise ConfigError(f"{path}: base file {base_path} not found ({BASE_KEY}: {base})")
    return _merge(_resolve(base_path, (*chain, path)), values)


def read_yaml(path: str) -> dict[str, Any]:
    """The mapping a YAML config file stands for: its `base:` chain resolved and merged, the
    file's own keys last, without the `base` key.

    Paths may be remote (`gs://...`, `ram://...`) and are then read through `tf.io.gfile`
    (their bases too); local files are read without TensorFlow.
    """
    return _resolve(path, ())


def load_yaml(cls, path: str, overrides: list[str] = ()):
    """Load `cls` from a YAML file (its `base:` chain resolved, `read_yaml`), then apply
    `key.path=value` overrides (values are YAML).

    `path` may be remote (`gs://...`, `ram://...`: a run's own `config.yaml` next to its
    checkpoints); those are read through `tf.io.gfile`, local files without TensorFlow.
    """
    values = read_yaml(path)
    for item in overrides:
        key, sep, raw = item.partition("=")
        _check(bool(sep), item, "override must look like key.path=value")
        node = values
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw)
    return from_dict(cls, values)


@dataclasses.dataclass
class Model:
    """Architecture. Defaults are the 1st place's round-2 model (`cfg_2_squeezeformer.yaml`): a
    14-block Squeezeformer of dim 208 with rotary attention, the part feature extractors, a
    backward decoder and a confidence head. `cfg_2.yaml` swaps in a 7-block Zipformer."""

    encoder: str = "squeezeformer"  # or "zipformer"
    dim: int = 208
    blocks: int = 14
    heads: int = 4
    attention: str = "rotary"  # Squeezeformer only: "rotary" or "relative" (cfg_1)
    part_extractors: bool = True  # cfg_2's four part feature extractors
    hand_features: bool = False  # not in the reference: add DominantHandFeatures to the input
    ff_expansion: int = 1  # Squeezeformer FFN width = dim * ff_expansion
    ffn_dims: tuple[int, int, int] = (156, 208, 260)  # Zipformer FFN1/2/3 hidden sizes
    # Zipformer only. stacks: [[blocks, downsample, width], ...] replaces `blocks` (empty: one
    # full-rate stack); constraints: Balancer/Whitener per block; schedules: false freezes the
    # schedules as the public fork ran them (ablation only); schedule_scale: the optimizer
    # update (the step unit, see `Train`) is multiplied by it before it reaches icefall's
    # schedule points.
    stacks: tuple[tuple[int, int, int], ...] = ()
    constraints: bool = False
    schedules: bool = True
    schedule_scale: float = 1.0
    conv_expansion: int = 2
    kernel_size: int = 51
    dropout: float = 0.1
    # The reference lets pw_conv_1's bias reach the depthwise conv at padded frames, so the last
    # kernel_size//2 real frames depend on the padding. False copies it (needed to reproduce
    # 1st-place checkpoints); True zeroes pads after the GLU (outputs independent of padding).
    zero_glu_pads: bool = False
    decoder_layers: int = 2
    decoder_heads: int = 4
    decoder_ffn: int = 512
    backward_decoder: bool = True  # cfg_2's time-reversed decoder (training only)
    confidence_head: bool = True  # cfg_2's aux head on encoder frame 0
    backward_loss_weight: float = 0.4
    aux_loss_weight: float = 0.02
    # Not in the 1st-place model (2nd and 11th place used it): a CTC head on the encoder whose
    # loss is mixed in with this weight. It aligns encoder frames with characters early, which
    # small models on little data need before the attention decoder locks on, and the ctc and
    # joint decoding modes read it (docs/decoding.md); 0 = off.
    ctc_loss_weight: float = 0.0

    def validate(self, path):
        _check(self.encoder in ("squeezeformer", "zipformer"), f"{path}.encoder",
               f"must be 'squeezeformer' or 'zipformer', got {self.encoder!r}")
        _check(self.attention in ("rotary", "relative"), f"{path}.attention",
               f"must be 'rotary' or 'relative', got {self.attention!r}")
        _check(self.dim > 0 and self.dim % self.heads == 0, f"{path}.dim",
               "must be a positive multiple of heads")
        _check(self.dim % self.decoder_heads == 0, f"{path}.dim",
               "must be a multiple of decoder_heads")
        _check(not self.part_extractors or self.dim % 4 == 0, f"{path}.dim",
               "must be a multiple of 4 with part_extractors")
        _check(self.blocks >= 1 and self.decoder_layers >= 1, path, "needs >= 1 block and layer")
        _check(self.kernel_size % 2 == 1, f"{path}.kernel_size", "must be odd")
        _check(self.schedule_scale > 0, f"{path}.schedule_scale", "must be > 0")
        zipformer_only = (self.stacks or self.constraints or not self.schedules
                          or self.schedule_scale != 1.0)
        _check(self.encoder == "zipformer" or not zipformer_only, f"{path}.encoder",
               "stacks, constraints, schedules and schedule_scale apply to the zipformer "
               "encoder only")
        for i, (n, factor, width) in enumerate(self.stacks):
            _check(n >= 1 and factor >= 1 and 0 < width <= self.dim and width % self.heads == 0,
                   f"{path}.stacks[{i}]", f"needs blocks >= 1, downsample >= 1 and a width <= "
                   f"dim ({self.dim}) divisible by heads ({self.heads}), got {[n, factor, width]}")
        for name in ("dropout", "backward_loss_weight", "aux_loss_weight", "ctc_loss_weight"):
            _prob(f"{path}.{name}", getattr(self, name))


@dataclasses.dataclass
class Train:
    """Optimisation and the run loop. Defaults are the 1st place's recipe, which `cfg_1.yaml`
    and `cfg_2_squeezeformer.yaml` train with: AdamW and warmup + cosine, 400 epochs, 8
    micro-batches per update. `cfg_2.yaml` switches to ScaledAdam + Eden.

    One step unit for every schedule: the optimizer update, one per `grad_accumulation`
    micro-batches (what icefall's batch counts count). The learning rate (warmup and cosine,
    whose lengths are given in epochs; Eden's `eden_steps`), the Zipformer's scheduled values
    (bypass bounds, skip rates, Balancer/Whitener probabilities, `Model.schedule_scale`) all
    read it. Micro-batches are counted only by the run loop: steps per epoch, checkpoints,
    time-limit stops and `steps_per_execution`.

    `--resume` keeps a run's schedule: it refuses a change of any key here (or in data, model,
    seed) except those that say where things are, how the run is placed and when it stops
    (`asl_keras.training.trainer.RESUMABLE` lists them: here strategy, precision, eval_every,
    eval_batch_size, runs_dir, time_limit_hours, steps_per_execution, jit_compile), unless
    `--force-resume`.
    """

    epochs: int = 400
    learning_rate: float = 4.5e-3
    weight_decay: float = 0.08
    warmup_epochs: float = 10.0
    clip_norm: float = 4.0
    grad_accumulation: int = 8  # effective batch = batch_size x replicas x this
    eval_every: int = 10  # epochs; the last epoch is always evaluated
    eval_batch_size: int = 64
    # "adamw" + "cosine" is the reference; "scaled_adam" + "eden" is Zipformer's
    # (docs/zipformer.md, 'ScaledAdam and Eden'), where learning_rate is Eden's base (icefall
    # 0.045) and weight_decay/clip_norm are unused (ScaledAdam's scale learning and median
    # clipping take their place).
    optimizer: str = "adamw"
    schedule: str = "cosine"
    eden_steps: float = 7500.0  # Eden's lr_batches, in optimizer updates
    eden_epochs: float = 3.5
    precision: str = "auto"  # auto: bf16 on TPU, fp16 on GPU, fp32 on CPU
    strategy: str = "auto"  # auto | tpu | multiworker | mirrored | default
    runs_dir: str = "runs"
    # Session limits (Kaggle 9 h, Colab up to 12 h): before this much wall time has passed
    # since the trainer started, stop between two training calls with a checkpoint that records
    # the epoch and the step within it; `--resume` continues at that step. None or 0: no limit.
    # One host only (several workers' clocks would stop them at different steps).
    time_limit_hours: float | None = None
    # Micro-batches per call of the traced training function (a loop inside the graph): the
    # host reads the losses, checks them for divergence, updates the progress bar and checks
    # the time limit once per call. 0 or null: by device, 16 on a TPU, 4 with GPUs, 1 on CPUs
    # (`asl_keras.training.strategy.steps_per_execution`). Changes no result.
    steps_per_execution: int | None = None
    # Compile each training step with XLA (`tf.function(jit_compile=True)`). A TPU compiles
    # every step with XLA whatever this says; on GPUs and CPUs true or false chooses, null
    # (auto) takes `asl_keras.training.strategy.AUTO_JIT_COMPILE` (docs/accelerators.md has
    # the measurement behind it). Changes no result beyond float rounding.
    jit_compile: bool | None = None

    def validate(self, path):
        _check(self.epochs >= 1, f"{path}.epochs", "must be >= 1")
        _check(0 < self.learning_rate < 1, f"{path}.learning_rate", "must be in (0, 1)")
        _check(0 <= self.weight_decay < 1, f"{path}.weight_decay", "must be in [0, 1)")
        _check(self.warmup_epochs >= 0, f"{path}.warmup_epochs", "must be >= 0")
        _check(self.clip_norm > 0, f"{path}.clip_norm", "must be > 0")
        _check(self.grad_accumulation >= 1, f"{path}.grad_accumulation", "must be >= 1")
        _check(self.eval_every >= 1, f"{path}.eval_every", "must be >= 1")
        _check(self.optimizer in ("adamw", "scaled_adam"), f"{path}.optimizer",
               "must be adamw or scaled_adam")
        _check(self.schedule in ("cosine", "eden"), f"{path}.schedule", "must be cosine or eden")
        _check(self.eden_steps > 0 and self.eden_epochs > 0, f"{path}.eden_steps",
               "eden_steps and eden_epochs must be > 0")
        _check(self.precision in ("auto", "float32", "mixed_float16", "mixed_bfloat16"),
               f"{path}.precision", "must be auto, float32, mixed_float16 or mixed_bfloat16")
        _check(self.strategy in ("auto", "tpu", "multiworker", "mirrored", "default"),
               f"{path}.strategy", "must be auto, tpu, multiworker, mirrored or default")
        _check(self.time_limit_hours is None or self.time_limit_hours >= 0,
               f"{path}.time_limit_hours", "must be >= 0 (0 or null: no limit)")
        _check(self.steps_per_execution is None or self.steps_per_execution >= 0,
               f"{path}.steps_per_execution", "must be >= 0 (0 or null: by device)")


@dataclasses.dataclass
class Config:
    """A whole run: data, model, training, and the seed of all its randomness."""

    name: str = "run"
    seed: int = 0
    data: Data = dataclasses.field(default_factory=Data)
    model: Model = dataclasses.field(default_factory=Model)
    train: Train = dataclasses.field(default_factory=Train)

    def validate(self, path):
        _check(self.seed >= 0, f"{path}.seed", "must be >= 0")


def load(path: str, overrides: list[str] = ()) -> Config:
    """Load a run config from YAML with `key.path=value` overrides."""
    return load_yaml(Config, path, overrides)
