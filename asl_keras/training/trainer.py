"""The training loop: distributed steps, evaluation, checkpoints, resume and logs.

One run = one config, fold and seed, written to `runs/{name}_fold{k}_seed{s}/`:
`ckpt/` (tf.train checkpoints every epoch: weights, optimizer slots and step, epoch counter,
the model's RNG state; written to a temporary name and renamed by TensorFlow), `history.csv`,
`tb/` (TensorBoard), `predictions_epoch{e}.csv`, `model.weights.h5` (final weights for export),
`config.yaml`, and PNG plots at the end. The input stream is a pure function of (seed, epoch),
so `resume=True` continues exactly where the last checkpoint left off.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf
import yaml

from asl_keras import config, vocab
from asl_keras.data import pipeline
from asl_keras.layers import decoder as dec
from asl_keras.models.recognizer import build_recognizer
from asl_keras.training import metrics, optimizers
from asl_keras.training import strategy as strategies


class TrainingDiverged(RuntimeError):
    """The loss became non-finite; the last good checkpoint is kept."""


class WorkerLost(RuntimeError):
    """Another worker (or the coordinator) stopped answering; resume from the last checkpoint."""


# What TensorFlow raises in a collective op when a peer process dies or stops answering.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                tf.errors.CancelledError, tf.errors.AbortedError)


class CheckpointMismatch(ValueError):
    """A run folder whose checkpoints were written for another architecture."""


def run_dir(cfg: config.Config) -> str:
    return os.path.join(cfg.train.runs_dir, f"{cfg.name}_fold{cfg.data.fold}_seed{cfg.seed}")


def steps_per_epoch(cfg: config.Config, replicas: int) -> int:
    """Micro-batches per epoch for the global batch (per-replica batch x replicas)."""
    index = pipeline.read_index(cfg.data.records)
    folds = sorted(int(f) for f in index["fold"].unique() if f >= 0)
    if cfg.data.fold not in (-1, *folds):
        raise config.ConfigError(f"data.fold: {cfg.data.fold} is out of range; the records in "
                                 f"{cfg.data.records} have folds {folds} (or -1 for all)")
    items = pipeline.Selection(index, cfg.data, training=True).items_per_epoch
    steps = items // (cfg.data.batch_size * replicas)
    if steps < 1:
        raise ValueError(f"{items} training items per epoch cannot fill one global batch of "
                         f"{cfg.data.batch_size * replicas}")
    return steps


class Trainer:
    """Builds the model, optimizer and data under a strategy and runs epochs."""

    def __init__(self, cfg: config.Config, strategy: tf.distribute.Strategy | None = None,
                 verbose: bool = True):
        self.cfg, self.verbose = cfg, verbose
        self.strategy = strategy or strategies.pick_strategy(cfg.train.strategy)
        self.policy = strategies.precision_policy(self.strategy, cfg.train.precision)
        strategies.set_precision(self.policy)
        self.dir = run_dir(cfg)
        self.chief = strategies.is_chief(self.strategy)
        replicas = self.strategy.num_replicas_in_sync
        self.global_batch = cfg.data.batch_size * replicas
        self.steps = steps_per_epoch(cfg, replicas)
        keras.utils.set_random_seed(cfg.seed)  # weight init, dropout (Keras seed generators)
        # ...but no TF global seed: tf.data's per-epoch shuffle seeds are tensors, which TF
        # refuses to combine with a global seed. The input stream is seeded explicitly.
        tf.random.set_seed(None)
        with self.strategy.scope():
            self.model = build_recognizer(cfg)
            opt = optimizers.make_optimizer(cfg.train, self.steps)
            if self.policy == "mixed_float16":
                opt = keras.optimizers.LossScaleOptimizer(opt)
            self.optimizer = opt
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        # Explicit variable lists: tf.train.Checkpoint(model=<Keras 3 model>) tracks only a few
        # of its variables (22 of 221 in a tiny model), so it would silently resume from a mix.
        # The lists include the dropout seed-generator states, so resuming repeats the RNG.
        self.checkpoint = tf.train.Checkpoint(model=list(self.model.variables),
                                              optimizer=list(self.optimizer.variables),
                                              epoch=self.epoch)
        # Every worker restores from the chief's folder; the others write to a scratch folder
        # (TF's multi-worker rule: all must save, only the chief's copy is kept).
        self.ckpt_dir = os.path.join(self.dir, "ckpt")
        write_dir = self.ckpt_dir if self.chief else os.path.join(self.dir,
                                                                  f"ckpt_worker_{id(self)}")
        self.manager = tf.train.CheckpointManager(self.checkpoint, write_dir, max_to_keep=2)
        self._train_step = None

    # ------------------------------------------------------------------ steps

    def _step_fn(self, batch):
        with tf.GradientTape() as tape:
            out = self.model(batch, training=True, step=self.optimizer.iterations)
            per_sample = self.model.per_sample_loss(batch, out)
            loss = tf.nn.compute_average_loss(per_sample, global_batch_size=self.global_batch)
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.model.trainable_variables)
        self.optimizer.apply(grads, self.model.trainable_variables)
        return loss

    def train_step(self, dist_batch) -> tf.Tensor:
        """One distributed micro-batch; returns the global mean loss."""
        if self._train_step is None:
            @tf.function
            def step(batch):
                per_replica = self.strategy.run(self._step_fn, args=(batch,))
                return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            self._train_step = step
        return self._train_step(dist_batch)

    # ------------------------------------------------------------------ run

    def last_checkpoint(self) -> str:
        return tf.train.latest_checkpoint(self.ckpt_dir) or "none (first epoch)"

    def restore(self) -> int:
        """Load the chief's latest checkpoint if any; returns the epoch to start from."""
        latest = tf.train.latest_checkpoint(self.ckpt_dir)
        if not latest:
            return 0
        saved = os.path.join(self.dir, "config.yaml")
        if os.path.exists(saved):
            old = dataclasses.asdict(config.load(saved).model)
            new = dataclasses.asdict(self.cfg.model)
            diff = {k: (old[k], new[k]) for k in new if old.get(k) != new[k]}
            if diff:
                raise CheckpointMismatch(f"{latest} was written for another model: "
                                         + ", ".join(f"model.{k} was {a}, now {b}"
                                                     for k, (a, b) in diff.items()))
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            raise CheckpointMismatch(f"{latest} does not fit this model ({e})") from e
        return int(self.epoch.numpy())

    def fit(self, resume: bool = False) -> dict:
        cfg = self.cfg
        os.makedirs(self.dir, exist_ok=True)
        if not resume and tf.train.latest_checkpoint(self.ckpt_dir):
            raise FileExistsError(f"{self.dir} already holds checkpoints; pass --resume to "
                                  "continue or choose another name/seed")
        start = self.restore() if resume else 0
        if self.chief:
            with open(os.path.join(self.dir, "config.yaml"), "w") as f:
                yaml.safe_dump(_plain(dataclasses.asdict(cfg)), f, sort_keys=False)
        data = self.strategy.distribute_datasets_from_function(
            lambda ctx: pipeline.train_dataset(cfg.data, cfg.seed, cfg.train.epochs, start, ctx,
                                               steps_per_epoch=self.steps))
        batches = iter(data)
        writer = tf.summary.create_file_writer(os.path.join(self.dir, "tb")) if self.chief \
            else tf.summary.create_noop_writer()
        result = {}
        for epoch in range(start, cfg.train.epochs):
            bar = keras.utils.Progbar(self.steps, stateful_metrics=["lr", "seq/s"],
                                      verbose=1 if self.verbose else 0)
            t0, losses = time.perf_counter(), []
            for step in range(self.steps):
                try:
                    loss = float(self.train_step(next(batches)))
                except _PEER_ERRORS as e:
                    raise WorkerLost(
                        f"lost another worker at epoch {epoch + 1}, step {step + 1} "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); last "
                        f"checkpoint: {self.last_checkpoint()}. Restart every worker with "
                        "--resume.") from e
                if not np.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss} at epoch {epoch + 1}, step {step + 1}; last good "
                        f"checkpoint: {self.last_checkpoint()}")
                losses.append(loss)
                rate = (step + 1) * self.global_batch / (time.perf_counter() - t0)
                bar.update(step + 1, [("loss", loss), ("lr", self.learning_rate()),
                                      ("seq/s", rate)])
            self.epoch.assign(epoch + 1)
            self.manager.save(checkpoint_number=epoch + 1)
            row = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": self.learning_rate(),
                   "seconds": time.perf_counter() - t0}
            if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs:
                result = self.evaluate(epoch + 1)
                row.update(result)
            self._log(row, writer)
        if self.chief:
            self.model.save_weights(os.path.join(self.dir, "model.weights.h5"))
            plot_history(self.dir)
        return result

    def learning_rate(self) -> float:
        opt = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        return float(opt.learning_rate.numpy() if hasattr(opt.learning_rate, "numpy")
                     else opt.learning_rate)

    def evaluate(self, epoch: int | None = None) -> dict:
        """Greedy-decode the validation fold; scores raw and after the dummy-phrase rule."""
        rows = predict(self.model, self.cfg, self.cfg.train.eval_batch_size)
        truth = [r["phrase"] for r in rows]
        result = {"score": metrics.normalized_total(truth, [r["prediction"] for r in rows]),
                  "score_pp": metrics.normalized_total(truth, [r["prediction_pp"] for r in rows]),
                  "score_damerau": metrics.normalized_total(
                      truth, [r["prediction"] for r in rows], damerau=True)}
        if self.chief and epoch is not None:
            _write_csv(os.path.join(self.dir, f"predictions_epoch{epoch}.csv"), rows)
        if self.verbose:
            print(f"validation fold {max(self.cfg.data.fold, 0)}: {len(rows)} sequences, "
                  + ", ".join(f"{k} {v:.4f}" for k, v in result.items()), flush=True)
        return result

    def _log(self, row: dict, writer) -> None:
        if not self.chief:
            return
        path = os.path.join(self.dir, "history.csv")
        fields = ["epoch", "loss", "lr", "seconds", "score", "score_pp", "score_damerau"]
        new = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fields)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in fields})
        with writer.as_default():
            for k, v in row.items():
                if k != "epoch":
                    tf.summary.scalar(k, v, step=row["epoch"])


def predict(model, cfg: config.Config, batch_size: int) -> list[dict]:
    """Per-sequence greedy predictions on the validation fold (raw and post-processed)."""
    @tf.function(reduce_retracing=True)  # the last, smaller batch must not retrace
    def generate(x, mask):
        encoded = model.encode(x, mask)  # once, for both the decoder and the confidence head
        return dec.greedy_decode(model.decoder, encoded, mask)[0], encoded

    rows = []
    for batch in pipeline.eval_dataset(cfg.data, batch_size=batch_size):
        ids, encoded = generate(batch["landmarks"], batch["mask"])
        conf = (tf.sigmoid(model.confidence(encoded)).numpy()
                if model.confidence_head is not None else [None] * len(ids))
        for i, seq_ids in enumerate(ids.numpy()):
            text = vocab.decode(seq_ids[1:])  # skip SOS; stops at EOS
            n = int(batch["n_frames"][i])
            c = None if conf[i] is None else float(conf[i])
            rows.append({"sequence_id": int(batch["sequence_id"][i]),
                         "phrase": vocab.decode(batch["labels"][i].numpy()),
                         "prediction": text, "prediction_pp": metrics.postprocess(text, n, c),
                         "confidence": "" if c is None else f"{c:.4f}", "n_frames": n})
    return rows


def _write_csv(path: str, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]) if rows else ["sequence_id"])
        w.writeheader()
        w.writerows(rows)


def _plain(obj):
    """Tuples -> lists so the YAML dump loads back with `config.load`."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def plot_history(directory: str) -> list[str]:
    """loss.png, score.png, lr.png from history.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(os.path.join(directory, "history.csv")) as f:
        hist = list(csv.DictReader(f))
    out = []
    for key, label in (("loss", "training loss"), ("score", "validation score"),
                       ("lr", "learning rate")):
        pts = [(int(r["epoch"]), float(r[key])) for r in hist if r.get(key)]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(*zip(*pts, strict=True), marker="o" if key == "score" else None)
        if key == "score":
            pp = [(int(r["epoch"]), float(r["score_pp"])) for r in hist if r.get("score_pp")]
            ax.plot(*zip(*pp, strict=True), marker=".", label="after dummy-phrase rule")
            ax.legend()
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        fig.tight_layout()
        path = os.path.join(directory, f"{key}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        out.append(path)
    return out
