"""One process of the two-worker data-preparation test (tests/training/test_multiworker.py).

`python -m tests.training.prepare_records_worker KAGGLE_DIR RECORDS`: with the TF_CONFIG of a
two-worker cluster, prepares the demo config's records exactly as `train_tf.py` does before it
builds the strategy (a tiny synthetic set generated into KAGGLE_DIR, converted into RECORDS),
then prints `READY` and the number of records in the index.
"""

from __future__ import annotations

import sys

from asl_keras import config
from asl_keras.data import pipeline
from asl_keras.training import run
from tests.paths import config_path


def main(kaggle_dir: str, records: str) -> None:
    cfg = config.load(config_path("demo.yaml"), [
        f"data.kaggle_dir={kaggle_dir}", f"data.records={records}",
        "data.synthetic={train: 12, supplemental: 4, participants: 4, per_file: 4, seed: 1}"])
    run.prepare_records(cfg)
    print(f"READY {len(pipeline.read_index(records))}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
