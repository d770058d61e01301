"""What `train_tf.py` does: resolve the config, prepare the data, train, report."""

from __future__ import annotations

import os
import sys

import tensorflow as tf

from asl_keras import config
from asl_keras.data import convert, synthetic
from asl_keras.training.trainer import (
    CheckpointMismatch,
    Trainer,
    TrainingDiverged,
    WorkerLost,
    run_dir,
)


def resolve_config(args) -> config.Config:
    """The YAML config with `--fold/--seed/--strategy` and `key=value` overrides applied."""
    overrides = list(args.overrides)
    for flag, key in (("fold", "data.fold"), ("seed", "seed"), ("strategy", "train.strategy")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    return config.load(args.config, overrides)


def prepare_records(cfg: config.Config) -> None:
    """Make sure `cfg.data.records` exists: convert, generating synthetic data if configured."""
    if tf.io.gfile.exists(f"{cfg.data.records.rstrip('/')}/{convert.MANIFEST}"):
        return
    source = cfg.data.kaggle_dir
    if source is None:
        raise FileNotFoundError(f"{cfg.data.records}: no converted records and no "
                                "data.kaggle_dir to convert from")
    if not os.path.exists(os.path.join(source, "train.csv")):
        s = cfg.data.synthetic
        if s is None:
            raise FileNotFoundError(f"{source}/train.csv not found (data.kaggle_dir)")
        print(f"generating synthetic data in {source} ...", flush=True)
        synthetic.generate(source, s.train, s.supplemental, sequences_per_file=s.per_file,
                           n_participants=s.participants, seed=s.seed)
    print(f"converting {source} -> {cfg.data.records} ...", flush=True)
    convert.convert(source, cfg.data.records)


def main_train(args) -> int:
    try:
        cfg = resolve_config(args)
        prepare_records(cfg)
        result = Trainer(cfg).fit(resume=args.resume)
    except (config.ConfigError, FileNotFoundError, FileExistsError, TrainingDiverged,
            CheckpointMismatch, WorkerLost) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"done: {run_dir(cfg)}; validation " + ", ".join(f"{k} {v:.4f}"
                                                           for k, v in result.items()))
    return 0
