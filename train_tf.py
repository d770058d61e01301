"""Train a recogniser: `python train_tf.py --config configs/cfg_2.yaml [--fold K] [--seed S]
[--resume] [--strategy NAME] [key.path=value ...]`.

When the config's records do not exist yet, they are converted from `data.kaggle_dir`; when
that folder does not exist either and the config has a `data.synthetic` section (the demo), a
synthetic Kaggle-format data set is generated there first.
"""

from __future__ import annotations

import argparse
import sys

from asl_keras.training.run import main_train

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--fold", type=int, help="held-out fold (-1: train on everything)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--resume", action="store_true", help="continue the run's checkpoints")
    parser.add_argument("--strategy", help="auto | tpu | multiworker | mirrored | default")
    parser.add_argument("overrides", nargs="*", help="key.path=value config overrides")
    sys.exit(main_train(parser.parse_args()))
