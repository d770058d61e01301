"""The training and export command lines: `python train_tf.py` / `asl-train` (`train`) and
`python export_tflite.py` / `asl-export` (`export`).

The repository's top-level scripts and the console scripts pip installs (setup.cfg
`[options.entry_points]`) call these same functions; `asl-evaluate` and `asl-convert` call
`asl_keras.evaluate.main` and `asl_keras.data.convert.main`, as their `python -m` forms do.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys

from asl_keras import decoding as decodings
from asl_keras import reference
from asl_keras.export import tflite
from asl_keras.training.run import main_train, parse_args


def train(argv: list[str] | None = None) -> int:
    """Train a recogniser: `python train_tf.py --config configs/cfg_2.yaml [--fold K] [--seed S]
    [--resume [--force-resume]] [--strategy NAME] [key.path=value ...]` (or `asl-train ...`).

    When the config's records do not exist yet, they are converted from `data.kaggle_dir`; when
    that folder does not exist either and the config has a `data.synthetic` section (the demo), a
    synthetic Kaggle-format data set is generated there first.

    Exit code 0: the run finished; 2: an error (printed); 3: stopped at `train.time_limit_hours`
    with a checkpoint, continue with the printed command (this one plus `--resume`).
    """
    # usage and the printed resume command name what was run: train_tf.py or asl-train
    prog = os.path.basename(sys.argv[0]) if argv is None else "train_tf.py"
    args = parse_args(sys.argv[1:] if argv is None else argv, inspect.getdoc(train), prog)
    return main_train(args)


def export(argv: list[str] | None = None) -> int:
    """Export trained checkpoints as the competition's TFLite model (asl_keras/export/tflite.py).

        python export_tflite.py --config configs/cfg_2.yaml --checkpoints A.weights.h5 [B ...] \\
            --out DIR [--weights auto|fp16|int8|fp32] [--decoding auto|attention|ctc|joint] \
            [--ctc-weight 0.3] [--beam 1] [--submission] [--records DIR] [--check-clips 64]
        python export_tflite.py --config configs/cfg_2_squeezeformer.yaml \\
            --checkpoints a.pth b.pth --out DIR --submission       # the 1st place's checkpoints

    (`asl-export` takes the same arguments.) Checkpoints: Keras `.weights.h5`, or 1st-place
    PyTorch state_dicts (`.pth`/`.pt`, or `.npz`; bare or `{"model": state_dict}` as its train.py
    saves them; `.pth` needs PyTorch installed). Writes DIR/model.tflite and
    DIR/inference_args.json (and DIR/submission.zip) once the contract and the TFLite-vs-Keras
    check pass, and prints the size, op set and what the check measured (on clips of --records,
    else of the config's data.records, else sample clips). On a failure it returns 1 with the
    reason and writes only DIR/model.FAILED.tflite. Paths may be gs:// or ram://.
    """
    p = argparse.ArgumentParser(description=inspect.getdoc(export).split("\n")[0])
    p.add_argument("--config", required=True, help="run config the checkpoints were trained with")
    p.add_argument("--checkpoints", nargs="+", required=True,
                   help=".weights.h5 files or 1st-place state_dicts (.pth, .pt, .npz); several "
                        "make an ensemble")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--weights", choices=("auto", *tflite.WEIGHTS), default="auto",
                   help="stored weights: fp16 (half the size of fp32), int8 (dynamic-range "
                        "quantisation, a quarter; fits more members) or fp32; auto (default): "
                        "fp16, or int8 when the fp16 file would not fit in 40 MB")
    p.add_argument("--no-fp16", dest="weights", action="store_const", const="fp32",
                   help="the same as --weights fp32")
    decodings.add_arguments(p, "built into the graph")
    p.add_argument("--submission", action="store_true", help="also write submission.zip")
    p.add_argument("--records", help="TFRecords folder whose clips the TFLite-vs-Keras check "
                                     "scores (default: the config's data.records if it exists)")
    p.add_argument("--check-clips", type=int, default=tflite.DEFAULT_CHECK_CLIPS,
                   help="clips of the TFLite-vs-Keras check (0 skips it)")
    args = p.parse_args(argv)
    if args.check_clips < 0:
        p.error("--check-clips must be >= 0")
    decoding = decodings.from_arguments(args, p)
    try:
        result = tflite.export(args.config, args.checkpoints, args.out, weights=args.weights,
                               make_submission=args.submission, check_clips=args.check_clips,
                               records_dir=args.records, decoding=decoding)
    except (tflite.ExportError, reference.WeightImportError, ValueError) as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0
