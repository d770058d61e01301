"""One process of the MultiWorkerMirroredStrategy test (tests/training/test_multiworker.py).

`python -m tests.training.multiworker_worker RECORDS RUNS_DIR STEPS`: with TF_CONFIG the
strategy comes from `pick_strategy("auto")` exactly as in `train_tf.py` (one replica per
worker); without it, this single process runs MirroredStrategy over 2 logical CPUs, i.e. the
same 2-way split of the global batch in one process. (A 1-replica run cannot match: BatchNorm
uses per-replica batch statistics, as the reference's data-parallel training did.) Every
process trains STEPS steps on one fixed global batch of 8 validation clips (each replica takes
its slice), all in one call of the trainer's traced multi-step function, and prints the losses
as JSON. Dropout and decoder masking are off so that no replica draws random numbers.
"""

from __future__ import annotations

import json
import os
import sys

import tensorflow as tf

from asl_keras import config
from asl_keras.training import strategy as strategies
from asl_keras.training import trainer
from tests.paths import config_path

GLOBAL_BATCH = 8


def single_process_two_replicas() -> tf.distribute.Strategy:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])


def main(records: str, runs_dir: str, steps: int) -> None:
    strategy = (strategies.pick_strategy("auto") if "TF_CONFIG" in os.environ
                else single_process_two_replicas())
    replicas = strategy.num_replicas_in_sync
    cfg = config.load(config_path("cfg_2_squeezeformer.yaml"), [
        f"data.records={records}", "data.max_len=32", "data.buffer_len=64",
        f"data.batch_size={GLOBAL_BATCH // replicas}", "data.scores=null", "model.dim=16",
        "model.blocks=1", "model.decoder_ffn=32", "model.kernel_size=5", "model.dropout=0.0",
        "model.backward_decoder=false", "data.augment.decoder_mask=0.0",
        f"train.runs_dir={runs_dir}", "train.grad_accumulation=1", "train.clip_norm=0.5",
        "train.warmup_epochs=0.0"])
    t = trainer.Trainer(cfg, strategy=strategy, verbose=False)
    batch = next(iter(trainer.pipeline.eval_dataset(cfg.data, batch_size=GLOBAL_BATCH)))
    batch = {k: v for k, v in batch.items() if k in ("landmarks", "mask", "labels", "score")}

    def slices(ctx):
        """The slices of this input pipeline's replicas, which take its elements in turn."""
        size = GLOBAL_BATCH // ctx.num_replicas_in_sync
        local = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        first = ctx.input_pipeline_id * local * size
        mine = {k: tf.reshape(v[first:first + local * size], (local, size, *v.shape[1:]))
                for k, v in batch.items()}
        return tf.data.Dataset.from_tensor_slices(mine).repeat()

    batches = iter(strategy.distribute_datasets_from_function(slices))
    losses = t.train_steps(batches, steps).numpy().tolist()
    print("LOSSES " + json.dumps({"replicas": replicas, "losses": losses}), flush=True)


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
