"""Export trained checkpoints as the competition's TFLite model (see asl_keras/export/tflite.py).

    python export_tflite.py --config configs/cfg_2.yaml --checkpoints A.weights.h5 [B ...] \
        --out DIR [--no-fp16] [--submission] [--records DIR] [--check-clips 64]
    python export_tflite.py --config configs/cfg_2_squeezeformer.yaml \
        --checkpoints a.pth b.pth --out DIR --submission       # the 1st place's checkpoints

Checkpoints: Keras `.weights.h5`, or 1st-place PyTorch state_dicts (`.pth`/`.pt`, or `.npz`;
bare or `{"model": state_dict}` as its train.py saves them; `.pth` needs PyTorch installed).
Writes DIR/model.tflite and DIR/inference_args.json (and DIR/submission.zip) once the contract
and the TFLite-vs-Keras check pass, and prints the size, op set and what the check measured (on
clips of --records, else of the config's data.records, else synthetic clips). On a failure it
exits 1 with the reason and writes only DIR/model.FAILED.tflite. Paths may be gs:// or ram://.
"""

from __future__ import annotations

import argparse
import sys

from asl_keras import reference
from asl_keras.export import tflite


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="run config the checkpoints were trained with")
    p.add_argument("--checkpoints", nargs="+", required=True,
                   help=".weights.h5 files or 1st-place state_dicts (.pth, .pt, .npz); several "
                        "make an ensemble")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-fp16", dest="fp16", action="store_false",
                   help="keep float32 weights (default: float16 weights, half the size)")
    p.add_argument("--submission", action="store_true", help="also write submission.zip")
    p.add_argument("--records", help="TFRecords folder whose clips the TFLite-vs-Keras check "
                                     "scores (default: the config's data.records if it exists)")
    p.add_argument("--check-clips", type=int, default=tflite.DEFAULT_CHECK_CLIPS,
                   help="clips of the TFLite-vs-Keras check (0 skips it)")
    args = p.parse_args(argv)
    if args.check_clips < 0:
        p.error("--check-clips must be >= 0")
    try:
        result = tflite.export(args.config, args.checkpoints, args.out, fp16=args.fp16,
                               make_submission=args.submission, check_clips=args.check_clips,
                               records_dir=args.records)
    except (tflite.ExportError, reference.WeightImportError) as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
