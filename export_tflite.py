"""Export trained checkpoints as the competition's TFLite model: `python export_tflite.py
--config C --checkpoints A [B ...] --out DIR [--submission]`, the same command as the installed
`asl-export`. Arguments: `--help`; outputs and exit codes: `asl_keras.cli.export`.
"""

from __future__ import annotations

from asl_keras.cli import export as main

if __name__ == "__main__":
    raise SystemExit(main())
