"""The competition package: `inference_args.json` next to `model.tflite`, and `submission.zip`.

`inference_args.json` = `{"selected_columns": [...]}` lists `landmarks.SELECTED_COLUMNS` in
native parquet order: the harness may hand columns over in the file's order whatever order is
requested (docs/competition.md, 'The submission contract'), and in native order both
readings agree.
`submission.zip` holds exactly `model.tflite` and `inference_args.json`, at its top level.

Every file goes through `tf.io.gfile`, so the output folder may be local, `gs://...` or
`ram://...`. Each is written to a temporary name and renamed, so a file under its final name
is always complete; `model.tflite` is written last, so when it exists its companions do too.
"""

from __future__ import annotations

import io
import json
import os
import zipfile

from asl_keras.landmarks import SELECTED_COLUMNS
from asl_keras.runtime import tf

MODEL_FILE, ARGS_FILE, ZIP_FILE = "model.tflite", "inference_args.json", "submission.zip"
# Where a model that failed the export's checks goes: a name no scorer or script takes for a
# finished model, kept so the failure can be inspected (e.g. with asl_keras.evaluate).
FAILED_MODEL_FILE = "model.FAILED.tflite"


def inference_args() -> bytes:
    """The content of `inference_args.json`."""
    return json.dumps({"selected_columns": list(SELECTED_COLUMNS)}).encode("utf-8")


def zip_bytes(model: bytes) -> bytes:
    """`submission.zip` of `model` and `inference_args.json` (nothing else, no folders), built
    in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(MODEL_FILE, model)
        z.writestr(ARGS_FILE, inference_args())
    return buffer.getvalue()


def write_file(path: str, data: bytes) -> str:
    """Write `data` to `path` through a temporary name and a rename; return `path`."""
    tmp = f"{path}.tmp"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)
    return path


def write_package(out_dir: str, model: bytes, make_zip: bool) -> tuple[str, str | None]:
    """Write `inference_args.json`, `submission.zip` (if `make_zip`) and `model.tflite` into
    `out_dir`, and remove a `model.FAILED.tflite` left by an earlier failed export (this model
    replaces it); return the model's and the zip's paths."""
    tf.io.gfile.makedirs(out_dir)
    write_file(os.path.join(out_dir, ARGS_FILE), inference_args())
    zip_path = write_file(os.path.join(out_dir, ZIP_FILE), zip_bytes(model)) if make_zip else None
    model_path = write_file(os.path.join(out_dir, MODEL_FILE), model)
    failed = os.path.join(out_dir, FAILED_MODEL_FILE)
    if tf.io.gfile.exists(failed):
        tf.io.gfile.remove(failed)
    return model_path, zip_path


def write_failed(out_dir: str, model: bytes) -> str:
    """Keep a model that failed the checks as `out_dir/model.FAILED.tflite`; return its path."""
    tf.io.gfile.makedirs(out_dir)
    return write_file(os.path.join(out_dir, FAILED_MODEL_FILE), model)


def selected_columns(model_path: str) -> list[str]:
    """The columns the harness feeds a model: `inference_args.json` next to `model_path`."""
    with tf.io.gfile.GFile(os.path.join(os.path.dirname(model_path), ARGS_FILE), "r") as f:
        return list(json.load(f)["selected_columns"])
