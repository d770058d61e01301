"""What `train_tf.py` does: resolve the config, prepare the data, train, report.

Exit codes: `EXIT_FINISHED` (0) the run trained all its epochs; `EXIT_ERROR` (2) it stopped on
an error, printed to stderr; `EXIT_TIME_LIMIT` (3) it stopped at `train.time_limit_hours` with a
checkpoint, and the printed command (the same one plus `--resume`) continues it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from asl_keras import config
from asl_keras.data import convert, synthetic
from asl_keras.runtime import tf
from asl_keras.training import strategy as strategies
from asl_keras.training.trainer import (
    CheckpointMismatch,
    TimeLimitReached,
    Trainer,
    TrainingDiverged,
    WorkerLost,
    run_dir,
)

EXIT_FINISHED, EXIT_ERROR, EXIT_TIME_LIMIT = 0, 2, 3

# Command-line flags that set a config key.
CONFIG_FLAGS = (("fold", "data.fold"), ("seed", "seed"), ("strategy", "train.strategy"))


def parse_args(argv: list[str], description: str | None = None,
               prog: str = "train_tf.py") -> argparse.Namespace:
    """The training command line, as `prog` (`train_tf.py` or `asl-train`) takes it."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--fold", type=int, help="held-out fold (-1: train on everything)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--resume", action="store_true", help="continue the run's checkpoints")
    parser.add_argument("--force-resume", action="store_true",
                        help="with --resume: continue even though keys that shape the model, "
                             "schedule or data order changed since the run's config.yaml")
    parser.add_argument("--strategy", help="auto | tpu | multiworker | mirrored | default")
    parser.add_argument("overrides", nargs="*", help="key.path=value config overrides")
    return parser.parse_args(argv, argparse.Namespace(prog=prog))


def resolve_config(args) -> config.Config:
    """The YAML config with `--fold/--seed/--strategy` and `key=value` overrides applied."""
    overrides = list(args.overrides)
    for flag, key in CONFIG_FLAGS:
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    return config.load(args.config, overrides)


def resume_command(args) -> str:
    """The command line (the one that was run: `train_tf.py` or `asl-train`) that resumes the
    run these arguments started."""
    prog = getattr(args, "prog", "train_tf.py")
    words = [*(["python", prog] if prog.endswith(".py") else [prog]), "--config", args.config]
    for flag, _ in CONFIG_FLAGS:
        if getattr(args, flag) is not None:
            words += [f"--{flag}", str(getattr(args, flag))]
    return shlex.join([*words, *args.overrides, "--resume"])


def prepare_records(cfg: config.Config) -> None:
    """Make sure `cfg.data.records` exists: convert, generating synthetic data if configured.

    In a cluster (TF_CONFIG) only the chief generates and converts, since several converters
    in one folder delete each other's temporary shards; every other worker waits up to
    `data.records_wait` seconds for the chief's manifest. The folder must therefore be one all
    workers see (`gs://`, or a local folder when they share a host).
    """
    records = cfg.data.records
    if convert.converted(records):
        return
    chief = strategies.chief_elsewhere()
    if chief is not None:
        wait = cfg.data.records_wait
        print(f"waiting up to {wait:g} s for the chief ({chief}) to prepare {records} ...",
              flush=True)
        if not convert.wait_for(records, wait):
            raise FileNotFoundError(
                f"{records}: no finished conversion ({convert.MANIFEST}) after waiting "
                f"{wait:g} s for the chief ({chief}) to prepare it; check that the chief runs "
                "and writes to this same folder, or raise data.records_wait")
        return
    source = cfg.data.kaggle_dir
    if source is None:
        raise FileNotFoundError(f"{records}: no converted records and no "
                                "data.kaggle_dir to convert from")
    if not tf.io.gfile.exists(os.path.join(source, "train.csv")):
        s = cfg.data.synthetic
        if s is None:
            raise FileNotFoundError(f"{source}/train.csv not found (data.kaggle_dir)")
        print(f"generating synthetic data in {source} ...", flush=True)
        synthetic.generate(source, s.train, s.supplemental, sequences_per_file=s.per_file,
                           n_participants=s.participants, seed=s.seed,
                           difficulty=s.difficulty)
    print(f"converting {source} -> {records} ...", flush=True)
    convert.convert(source, records)


def main_train(args) -> int:
    """Train as `args` (see `parse_args`) say; returns the exit code (module docstring)."""
    try:
        cfg = resolve_config(args)
        prepare_records(cfg)
        result = Trainer(cfg).fit(resume=args.resume, force_resume=args.force_resume)
    except TimeLimitReached as e:
        print(f"{e}; resume with: {resume_command(args)}", flush=True)
        return EXIT_TIME_LIMIT
    except (config.ConfigError, FileNotFoundError, FileExistsError, TrainingDiverged,
            CheckpointMismatch, WorkerLost, strategies.StrategyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"done: {run_dir(cfg)}; validation " + ", ".join(f"{k} {v:.4f}"
                                                           for k, v in result.items()))
    return EXIT_FINISHED
