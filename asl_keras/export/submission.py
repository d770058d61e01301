"""The competition package: `inference_args.json` next to `model.tflite`, and `submission.zip`.

`inference_args.json` = `{"selected_columns": [...]}` lists `landmarks.SELECTED_COLUMNS` in
native parquet order: the harness may hand columns over in the file's order whatever order is
requested (competition_and_field.md 1), and in native order both readings agree.
`submission.zip` holds exactly `model.tflite` and `inference_args.json`, at its top level.
"""

from __future__ import annotations

import json
import os
import zipfile

from asl_keras.landmarks import SELECTED_COLUMNS

MODEL_FILE, ARGS_FILE, ZIP_FILE = "model.tflite", "inference_args.json", "submission.zip"


def write_inference_args(out_dir: str) -> str:
    """Write `out_dir/inference_args.json`; return its path."""
    path = os.path.join(out_dir, ARGS_FILE)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"selected_columns": list(SELECTED_COLUMNS)}, f)
    return path


def selected_columns(model_path: str) -> list[str]:
    """The columns the harness feeds a model: `inference_args.json` next to `model_path`."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), ARGS_FILE)
    with open(path, encoding="utf-8") as f:
        return list(json.load(f)["selected_columns"])


def write_submission(out_dir: str) -> str:
    """Zip `out_dir/model.tflite` and `out_dir/inference_args.json` into
    `out_dir/submission.zip` (nothing else, no folders); return its path."""
    path = os.path.join(out_dir, ZIP_FILE)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in (MODEL_FILE, ARGS_FILE):
            z.write(os.path.join(out_dir, name), arcname=name)
    return path
