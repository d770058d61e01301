"""Train a recogniser: `python train_tf.py --config configs/cfg_2.yaml [--fold K] [--seed S]
[--resume [--force-resume]] [--strategy NAME] [key.path=value ...]`.

When the config's records do not exist yet, they are converted from `data.kaggle_dir`; when
that folder does not exist either and the config has a `data.synthetic` section (the demo), a
synthetic Kaggle-format data set is generated there first.

Exit code 0: the run finished; 2: an error (printed); 3: stopped at `train.time_limit_hours`
with a checkpoint, continue with the printed command (this one plus `--resume`).
"""

from __future__ import annotations

import sys

from asl_keras.training.run import main_train, parse_args

if __name__ == "__main__":
    sys.exit(main_train(parse_args(sys.argv[1:], __doc__)))
