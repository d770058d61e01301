"""Export trained checkpoints as the competition's TFLite model (see asl_keras/export/tflite.py).

    python export_tflite.py --config configs/cfg_2.yaml --checkpoints A.weights.h5 [B ...] \
        --out DIR [--no-fp16] [--submission] [--parity-sequences 32]

Writes DIR/model.tflite and DIR/inference_args.json (and DIR/submission.zip), prints the size,
op set and TFLite-vs-Keras parity; exits 1 with the reason when the contract is broken.
"""

from __future__ import annotations

import argparse
import sys

from asl_keras.export import tflite


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="run config the checkpoints were trained with")
    p.add_argument("--checkpoints", nargs="+", required=True,
                   help=".weights.h5 files; several make an ensemble")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-fp16", dest="fp16", action="store_false",
                   help="keep float32 weights (default: float16 weights, half the size)")
    p.add_argument("--submission", action="store_true", help="also write submission.zip")
    p.add_argument("--parity-sequences", type=int, default=32,
                   help="synthetic clips for the TFLite-vs-Keras check (0 skips it)")
    args = p.parse_args(argv)
    try:
        result = tflite.export(args.config, args.checkpoints, args.out, fp16=args.fp16,
                               make_submission=args.submission,
                               parity_sequences=args.parity_sequences)
    except tflite.ExportError as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    print(result.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
