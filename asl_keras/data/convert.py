"""Convert a Kaggle-format folder to sharded TFRecords, once.

    python -m asl_keras.data.convert --data-dir D --out tfrecords/NAME [--workers N] [--verify]

One shard per parquet file, written by a pool of processes (memory stays bounded by one parquet
file per worker). Every file is read and written through `tf.io.gfile`, so either folder may be
local, `gs://` or `ram://`; a `ram://` folder lives in one process's memory, so with one the
conversion runs in-process whatever `workers` says. A shard is written to a temporary name and
renamed when complete, together with a small sidecar JSON of its counts, so an interrupted run
resumes where it stopped: shards with a sidecar are kept, everything else is rewritten. The
folder's `conversion.json` holds a fingerprint of the inputs and options; converting different
inputs into the same folder is refused. `manifest.json` records per-shard counts, totals, every
skipped row with its reason, and the source files; it is written last, so other processes can
wait for it (`wait_for`). Every CSV row is either written or listed as skipped.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import sys
import time

import pandas as pd
from tqdm import tqdm

from asl_keras import vocab
from asl_keras.data import folds, kaggle, records
from asl_keras.landmarks import SELECTED_COLUMNS
from asl_keras.runtime import tf

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
INDEX = "index.csv"
FINGERPRINT = "conversion.json"
POLL_SECONDS = 5.0  # how often `wait_for` looks for the manifest


class ConversionError(RuntimeError):
    """The output folder or the written records disagree with what was asked."""


def _write_json(path: str, obj) -> None:
    """Write JSON atomically (temporary file + rename; also on gs://)."""
    tmp = f"{path}.tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def _read_json(path: str):
    with tf.io.gfile.GFile(path, "r") as f:
        return json.load(f)


def _absolute(path: str) -> str:
    """A local path made absolute, for the record; a URL (`gs://`, `ram://`) as given."""
    return path if "://" in path else os.path.abspath(path)


def phrase_problem(phrase: str) -> str | None:
    """Why a phrase cannot be a training target, or None when it can."""
    if not phrase:
        return "empty phrase"
    bad = vocab.invalid_characters(phrase)
    if bad:
        return f"phrase has characters outside the map: {bad}"
    if len(phrase) > vocab.MAX_PHRASE_LEN:
        return f"phrase longer than {vocab.MAX_PHRASE_LEN} characters ({len(phrase)})"
    return None


def plan(data_dir: str, num_folds: int) -> tuple[pd.DataFrame, list[dict]]:
    """Metadata rows to convert (with `fold`) and the rows skipped for their phrase."""
    meta = kaggle.read_metadata(data_dir)
    meta["fold"] = folds.assign_folds(meta, num_folds)
    problems = [phrase_problem(p) for p in meta["phrase"]]
    skipped = [kaggle.skip_record(r, p)
               for r, p in zip(meta.itertuples(), problems, strict=True) if p]
    return meta[[p is None for p in problems]], skipped


def fingerprint(data_dir: str, num_folds: int) -> str:
    """Hash of what determines the records: format, columns, folds, CSV bytes, parquet sizes."""
    h = hashlib.sha256(json.dumps([FORMAT_VERSION, SELECTED_COLUMNS, num_folds]).encode())
    for name in sorted(kaggle.METADATA_FILES):
        path = os.path.join(data_dir, name)
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path, "rb") as f:
                h.update(name.encode() + f.read())
    for sub in ("train_landmarks", "supplemental_landmarks"):
        folder = os.path.join(data_dir, sub)
        if tf.io.gfile.isdir(folder):
            for name in sorted(tf.io.gfile.listdir(folder)):
                size = tf.io.gfile.stat(os.path.join(folder, name)).length
                h.update(f"{sub}/{name}:{size}".encode())
    return h.hexdigest()


def _claim_output(out_dir: str, data_dir: str, num_folds: int) -> None:
    tf.io.gfile.makedirs(out_dir)
    fp_path = f"{out_dir}/{FINGERPRINT}"
    fp = fingerprint(data_dir, num_folds)
    if tf.io.gfile.exists(fp_path):
        old = _read_json(fp_path)
        if old["fingerprint"] != fp:
            raise ConversionError(
                f"{out_dir} already holds a different conversion (of {old['data_dir']}, "
                f"{old['num_folds']} folds); choose another --out or delete that folder")
    elif records.list_shards(out_dir):
        raise ConversionError(f"{out_dir} holds shard files of an unknown conversion "
                              f"(no {FINGERPRINT}); choose another --out or delete them")
    else:
        _write_json(fp_path, {"fingerprint": fp, "data_dir": _absolute(data_dir),
                              "num_folds": num_folds, "format_version": FORMAT_VERSION})


def shard_name(rows: pd.DataFrame) -> str:
    """Shard file name for the rows of one parquet file, e.g. `train-1816796431.tfrecord`."""
    kind = "supplemental" if rows["is_supplemental"].iloc[0] else "train"
    return f"{kind}-{int(rows['file_id'].iloc[0])}{records.SHARD_SUFFIX}"


def convert_file(data_dir: str, rows: pd.DataFrame, out_dir: str) -> dict:
    """Write the shard of one parquet file and its sidecar; returns the sidecar content."""
    name = shard_name(rows)
    path = f"{out_dir}/{name}"
    skipped: list[dict] = []
    unlisted: list[int] = []
    fold_of = dict(zip(rows["sequence_id"].tolist(), rows["fold"].tolist(), strict=True))
    n_frames: dict[str, int] = {}
    tmp = f"{path}.tmp-{os.getpid()}"
    with tf.io.TFRecordWriter(tmp) as writer:
        for seq in kaggle.iter_file(data_dir, rows, skipped, unlisted):
            writer.write(records.serialize(seq, vocab.encode(seq.phrase),
                                           fold_of[seq.sequence_id]))
            n_frames[str(seq.sequence_id)] = len(seq.frames)
    side = {"file": name, "source": rows["path"].iloc[0], "sequences": len(n_frames),
            "frames": sum(n_frames.values()), "bytes": tf.io.gfile.stat(tmp).length,
            "skipped": skipped, "unlisted_sequence_ids": unlisted, "n_frames": n_frames}
    tf.io.gfile.rename(tmp, path, overwrite=True)
    _write_json(f"{path}.json", side)  # its presence marks the shard complete
    return side


def _is_complete(out_dir: str, name: str) -> bool:
    return tf.io.gfile.exists(f"{out_dir}/{name}") and tf.io.gfile.exists(f"{out_dir}/{name}.json")


def convert(data_dir: str, out_dir: str, *, num_folds: int = folds.NUM_FOLDS,
            workers: int | None = None, progress: bool = True) -> dict:
    """Convert `data_dir` into `out_dir`; resumes a partial run. Returns the manifest.

    `workers` processes (default: one per core) convert the files, or this process alone when
    either folder is on `ram://`: a spawned worker would see its own, empty, `ram://`.
    """
    meta, skipped = plan(data_dir, num_folds)
    _claim_output(out_dir, data_dir, num_folds)
    for path in sorted(meta["path"].unique()):
        if not tf.io.gfile.exists(os.path.join(data_dir, path)):
            raise kaggle.KaggleFormatError(
                f"{os.path.join(data_dir, path)}: landmark file not found (named by "
                f"{int((meta['path'] == path).sum())} metadata rows)")
    for stale in tf.io.gfile.glob(f"{out_dir}/*.tmp-*"):  # left by an interrupted run
        tf.io.gfile.remove(stale)
    groups = [g for _, g in meta.groupby("path", sort=True)]
    todo = [g for g in groups if not _is_complete(out_dir, shard_name(g))]
    in_memory = data_dir.startswith("ram://") or out_dir.startswith("ram://")
    workers = 1 if in_memory else max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    bar = tqdm(total=len(groups), initial=len(groups) - len(todo), unit="file",
               disable=not progress, desc=f"convert -> {out_dir}")
    if workers == 1:
        for g in todo:
            convert_file(data_dir, g, out_dir)
            bar.update()
    else:
        # spawn, not fork: the parent has TensorFlow's threads running.
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for fut in cf.as_completed([pool.submit(convert_file, data_dir, g, out_dir)
                                        for g in todo]):
                fut.result()
                bar.update()
    bar.close()
    names = [shard_name(g) for g in groups]
    manifest = build_manifest(data_dir, out_dir, names, skipped, len(meta) + len(skipped), meta)
    write_index(out_dir, names, meta)
    _write_json(f"{out_dir}/{MANIFEST}", manifest)  # written last: marks the conversion done
    return manifest


def write_index(out_dir: str, names: list[str], meta: pd.DataFrame) -> None:
    """`index.csv`: one light row per record (no frames), for sampling and fold selection."""
    rows = []
    for name in names:
        side = _read_json(f"{out_dir}/{name}.json")
        rows += [(int(sid), n, name) for sid, n in side["n_frames"].items()]
    idx = pd.DataFrame(rows, columns=["sequence_id", "n_frames", "shard"])
    idx = meta[["sequence_id", "participant_id", "phrase", "fold", "is_supplemental"]].merge(
        idx, on="sequence_id", how="inner")
    idx["is_supplemental"] = idx["is_supplemental"].astype(int)
    with tf.io.gfile.GFile(f"{out_dir}/{INDEX}", "w") as f:
        idx.to_csv(f, index=False)


def build_manifest(data_dir: str, out_dir: str, names: list[str], skipped: list[dict],
                   csv_rows: int, meta: pd.DataFrame) -> dict:
    """Collect the sidecars into the manifest; checks that rows in == written + skipped."""
    shards = [_read_json(f"{out_dir}/{n}.json") for n in names]
    skipped = skipped + [s for sh in shards for s in sh["skipped"]]
    written = sum(sh["sequences"] for sh in shards)
    if written + len(skipped) != csv_rows:
        raise ConversionError(f"{csv_rows} metadata rows but {written} written + "
                              f"{len(skipped)} skipped")
    kept = meta[~meta["sequence_id"].isin([s["sequence_id"] for s in skipped])]
    return {
        "format_version": FORMAT_VERSION,
        "data_dir": _absolute(data_dir),
        "selected_columns": list(SELECTED_COLUMNS),
        "totals": {"metadata_rows": csv_rows, "written": written, "skipped": len(skipped),
                   "frames": sum(sh["frames"] for sh in shards),
                   "train": int((~kept["is_supplemental"]).sum()),
                   "supplemental": int(kept["is_supplemental"].sum())},
        "folds": {str(k): int(v) for k, v in kept.groupby("fold").size().items()},
        "shards": [{k: sh[k] for k in ("file", "source", "sequences", "frames", "bytes")}
                   for sh in shards],
        "skipped": skipped,
        "unlisted_sequences": {sh["source"]: sh["unlisted_sequence_ids"] for sh in shards
                               if sh["unlisted_sequence_ids"]},
    }


def converted(out_dir: str) -> bool:
    """Whether `out_dir` holds a finished conversion (its manifest, written last, exists)."""
    return tf.io.gfile.exists(f"{out_dir.rstrip('/')}/{MANIFEST}")


def wait_for(out_dir: str, timeout: float) -> bool:
    """Wait up to `timeout` seconds for another process to finish converting into `out_dir`.

    Looks every `POLL_SECONDS` (a cheap `exists`, also on `gs://`); returns whether the
    conversion finished in time.
    """
    deadline = time.monotonic() + timeout
    while not converted(out_dir):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(POLL_SECONDS, left))
    return True


def verify(data_dir: str, out_dir: str) -> dict:
    """Re-read every shard; check counts against the manifest and ids against the CSVs."""
    manifest = _read_json(f"{out_dir}/{MANIFEST}")
    seen: dict[int, str] = {}
    for sh in manifest["shards"]:
        n = 0
        for rec in records.read_shard(f"{out_dir}/{sh['file']}"):
            if rec["sequence_id"] in seen:
                raise ConversionError(f"sequence {rec['sequence_id']} in both {sh['file']} "
                                      f"and {seen[rec['sequence_id']]}")
            if rec["frames"].shape[0] != rec["n_frames"]:
                raise ConversionError(f"{sh['file']}: sequence {rec['sequence_id']} has "
                                      f"{rec['frames'].shape[0]} frames, n_frames says "
                                      f"{rec['n_frames']}")
            seen[rec["sequence_id"]] = sh["file"]
            n += 1
        if n != sh["sequences"]:
            raise ConversionError(f"{sh['file']}: {n} records, manifest says {sh['sequences']}")
    meta = kaggle.read_metadata(data_dir)
    expected = set(meta["sequence_id"].tolist()) - {s["sequence_id"] for s in manifest["skipped"]}
    missing, extra = expected - set(seen), set(seen) - expected
    if missing or extra:
        raise ConversionError(f"{len(missing)} CSV sequences missing from the records "
                              f"(e.g. {sorted(missing)[:3]}), {len(extra)} unexpected "
                              f"(e.g. {sorted(extra)[:3]})")
    return {"records": len(seen), "metadata_rows": len(meta),
            "skipped": len(manifest["skipped"])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m asl_keras.data.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", required=True, help="Kaggle-format folder (train.csv, ...)")
    p.add_argument("--out", required=True, help="output folder (local or gs://)")
    p.add_argument("--folds", type=int, default=folds.NUM_FOLDS)
    p.add_argument("--workers", type=int, default=None,
                   help="processes (default: cores; 1 with a ram:// folder)")
    p.add_argument("--verify", action="store_true", help="re-read and check everything")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    try:
        m = convert(a.data_dir, a.out, num_folds=a.folds, workers=a.workers,
                    progress=not a.quiet)
        t = m["totals"]
        print(f"{t['written']} sequences written to {len(m['shards'])} shards in {a.out}, "
              f"{t['skipped']} skipped (reasons in {a.out}/{MANIFEST})")
        if a.verify:
            v = verify(a.data_dir, a.out)
            print(f"verified: {v['records']} records + {v['skipped']} skipped = "
                  f"{v['metadata_rows']} metadata rows")
    except (kaggle.KaggleFormatError, ConversionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
