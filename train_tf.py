"""Train a recogniser: `python train_tf.py --config configs/cfg_2.yaml [--fold K] [--seed S]
[--resume [--force-resume]] [--strategy NAME] [key.path=value ...]`, the same command as the
installed `asl-train`. Usage and exit codes: `--help`, or `asl_keras.cli.train`.
"""

from __future__ import annotations

from asl_keras.cli import train as main

if __name__ == "__main__":
    raise SystemExit(main())
