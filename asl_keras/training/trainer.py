"""The training loop: distributed steps, evaluation, checkpoints, resume and logs.

One run = one config, fold and seed, written to `{train.runs_dir}/{name}_fold{k}_seed{s}/`:
`ckpt/` (tf.train checkpoints after every epoch and at a time-limit stop: weights, optimizer
slots and step, the model's RNG state and the position in the run, i.e. the epoch and the
micro-batch within it; written to a temporary name and renamed by TensorFlow), `history.csv`,
`tb/` (TensorBoard), `predictions_epoch{e}.csv`, `model.weights.h5` (final weights for export),
`config.yaml`, and PNG plots at the end. Every file goes through `tf.io.gfile`, so `runs_dir` can
be a bucket (`gs://...`). The input stream is a pure function of (seed, epoch) and a resumed
epoch skips the micro-batches it had trained, so `resume=True` continues exactly where the last
checkpoint left off: same schedule position, same data order, same weights as an uninterrupted
run.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import time
from collections.abc import Callable

import keras
import numpy as np
import yaml

from asl_keras import config, inference, vocab
from asl_keras.data import pipeline
from asl_keras.layers import decoder as dec
from asl_keras.models.recognizer import build_recognizer
from asl_keras.runtime import tf
from asl_keras.training import clipping, metrics, optimizers
from asl_keras.training import strategy as strategies


class TrainingDiverged(RuntimeError):
    """The loss became non-finite; the last good checkpoint is kept."""


class WorkerLost(RuntimeError):
    """Another worker (or the coordinator) stopped answering; resume from the last checkpoint."""


# What TensorFlow raises in a collective op when a peer process dies or stops answering.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                tf.errors.CancelledError, tf.errors.AbortedError)


class CheckpointMismatch(ValueError):
    """A run folder whose checkpoints were written for another model, schedule or data order."""


class TimeLimitReached(Exception):
    """Training stopped at `train.time_limit_hours`, with a checkpoint: resume to continue.

    `epoch` is the number of finished epochs, `step` the micro-batches trained of the next one.
    """

    def __init__(self, message: str, epoch: int, step: int):
        super().__init__(message)
        self.epoch, self.step = epoch, step


# Config keys a resumed run may change: where things are, how the run is placed on devices,
# how often it is evaluated and when it stops, not what it computes. A change of any other key
# (model, data, augmentation, schedule, optimizer, seed, ...) would not continue the same run,
# so `Trainer.restore` refuses it unless forced.
RESUMABLE = ("name", "train.runs_dir", "train.strategy", "train.precision", "train.eval_every",
             "train.eval_batch_size", "train.time_limit_hours", "train.steps_per_execution",
             "train.jit_compile",
             "data.kaggle_dir", "data.synthetic", "data.records_wait")


def config_changes(old: config.Config, new: config.Config) -> list[str]:
    """'key was A, now B' for every key outside RESUMABLE whose value differs."""
    a, b = _flatten(dataclasses.asdict(old)), _flatten(dataclasses.asdict(new))
    keys = list(b) + [k for k in a if k not in b]
    return [f"{k} was {a.get(k)}, now {b.get(k)}" for k in keys
            if a.get(k) != b.get(k)
            and not any(k == r or k.startswith(f"{r}.") for r in RESUMABLE)]


class TimeLimit:
    """Whether the next training call, and what has to follow it, still ends before a deadline.

    A "step" is one call of the training function (`train.steps_per_execution` micro-batches).
    The deadline is `hours` after construction (None or 0: none). `fits` budgets the longest
    call, checkpoint save and (before the last call of an evaluated epoch) evaluation measured
    so far in this session, so that the stop checkpoint is written before the deadline. The
    first call of a session (tracing) is the slowest, which makes the margin generous. `clock`
    (seconds) is injectable for tests.
    """

    def __init__(self, hours: float | None, clock: Callable[[], float] = time.perf_counter):
        self.seconds = hours * 3600 if hours else None
        self.clock = clock
        self.start = clock()
        self.longest = {"step": 0.0, "save": 0.0, "evaluate": 0.0}

    @contextlib.contextmanager
    def timing(self, kind: str):
        """Measure the block as one `kind`: "step", "save" or "evaluate"."""
        began = self.clock()
        yield
        self.longest[kind] = max(self.longest[kind], self.clock() - began)

    def fits(self, evaluates: bool) -> bool:
        """Whether one more call, a checkpoint and maybe an evaluation end in time."""
        if self.seconds is None:
            return True
        need = self.longest["step"] + self.longest["save"]
        need += self.longest["evaluate"] if evaluates else 0.0
        return self.clock() - self.start + need <= self.seconds


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


def multi_step(strategy: tf.distribute.Strategy,
               step_fn: Callable) -> Callable[[object, int], tf.Tensor]:
    """`run(iterator, count)`: `count` micro-batches, `strategy.run(step_fn, (next(iterator),))`
    each, in one call of one traced function; returns their losses summed over replicas,
    float32 `[count]`.

    The micro-batches loop inside the graph (`tf.while_loop`), so the host waits once per call,
    not once per micro-batch. `count` enters as a tensor: every count shares the trace. The
    iterations run one after the other (`parallel_iterations=1`), each reading the weights,
    optimizer counters and RNG states the previous one wrote.
    """

    @tf.function
    def loop(iterator, count):
        def body(i, losses):
            per_replica = strategy.run(step_fn, args=(next(iterator),))
            loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            return i + 1, losses.write(i, tf.cast(loss, tf.float32))

        _, losses = tf.while_loop(lambda i, _: i < count, body,
                                  (tf.constant(0), tf.TensorArray(tf.float32, size=count)),
                                  parallel_iterations=1)
        return losses.stack()

    return lambda iterator, count: loop(iterator, tf.constant(count, tf.int32))


def decoding_function(model, strategy: tf.distribute.Strategy,
                      jit_compile: bool = False) -> Callable:
    """`model`'s greedy decoding on the strategy's replicas as one traced function: a
    distributed batch -> per-replica `(ids, confidence)`, int32 ids `[B, LABEL_LEN + 1]` and the
    confidence head's probability `[B]` (-1 without a head). `jit_compile`: each replica's
    decoding is compiled with XLA, as on a TPU."""

    @tf.function(jit_compile=jit_compile)
    def generate(x, mask):
        encoded = model.encode(x, mask)  # once, for both the decoder and the confidence head
        ids = dec.greedy_decode(model.decoder, encoded, mask)[0]
        if model.confidence_head is None:
            return ids, -tf.ones(tf.shape(ids)[:1])
        return ids, tf.sigmoid(model.confidence(encoded))

    @tf.function
    def decode(batch):
        return strategy.run(generate, args=(batch["landmarks"], batch["mask"]))

    return decode


class Trainer:
    """Builds the model, optimizer and data under a strategy and runs epochs."""

    def __init__(self, cfg: config.Config, strategy: tf.distribute.Strategy | None = None,
                 verbose: bool = True, clock: Callable[[], float] = time.perf_counter):
        self.cfg, self.verbose = cfg, verbose
        self.limit = TimeLimit(cfg.train.time_limit_hours, clock)  # counts from here
        self.strategy = strategy or strategies.pick_strategy(cfg.train.strategy)
        self.per_call = strategies.steps_per_execution(self.strategy,
                                                       cfg.train.steps_per_execution)
        self.xla = strategies.jit_compile(self.strategy, cfg.train.jit_compile)
        # a TPU compiles whatever runs on it; elsewhere the functions are marked for XLA
        marked = self.xla and not isinstance(self.strategy, tf.distribute.TPUStrategy)
        if marked and self.strategy.num_replicas_in_sync > 1:
            # the step all-reduces gradients inside itself (clipping.SummedGradients); under
            # MirroredStrategy that is a merge call, which a nested compiled function cannot
            # hold, and logical CPU devices share one XLA device
            raise config.ConfigError(
                "train.jit_compile: XLA-compiled steps need one replica outside a TPU "
                f"({self.strategy.num_replicas_in_sync} here); set train.jit_compile=false")
        if verbose:
            print(f"strategy ({cfg.train.strategy}): {strategies.describe(self.strategy)}; "
                  f"{self.per_call} micro-batch(es) per call; XLA {'on' if self.xla else 'off'}",
                  flush=True)
        if cfg.train.time_limit_hours and isinstance(self.strategy,
                                                     tf.distribute.MultiWorkerMirroredStrategy):
            raise config.ConfigError("train.time_limit_hours: works on one host only; the "
                                     "workers' clocks would stop them at different steps")
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
                opt = clipping.LossScaleOptimizer(opt)
            self.optimizer = opt
            self.optimizer.build(self.model.trainable_variables)
        # The position in the run, saved with the weights: finished epochs; micro-batches
        # trained of the next one, their summed loss and seconds (a time-limit stop falls
        # mid-epoch); the steps per epoch it ran with. Made outside the strategy scope, i.e.
        # plain host variables (TPUs have no float64).
        self.position = {"epoch": tf.Variable(0, dtype=tf.int64, trainable=False),
                         "step": tf.Variable(0, dtype=tf.int64, trainable=False),
                         "loss_sum": tf.Variable(0.0, dtype=tf.float64, trainable=False),
                         "seconds": tf.Variable(0.0, dtype=tf.float64, trainable=False),
                         "steps_per_epoch": tf.Variable(self.steps, dtype=tf.int64,
                                                        trainable=False)}
        # Explicit variable lists: tf.train.Checkpoint(model=<Keras 3 model>) tracks only a few
        # of its variables (22 of 221 in a tiny model), so it would silently resume from a mix.
        # The lists include the dropout seed-generator states, so resuming repeats the RNG, and
        # the gradient accumulators, so a stop between two accumulated micro-batches resumes.
        self.checkpoint = tf.train.Checkpoint(model=list(self.model.variables),
                                              optimizer=list(self.optimizer.variables),
                                              **self.position)
        # Every worker restores from the chief's folder; the others write to a scratch folder
        # (TF's multi-worker rule: all must save, only the chief's copy is kept).
        self.ckpt_dir = os.path.join(self.dir, "ckpt")
        write_dir = self.ckpt_dir if self.chief else os.path.join(self.dir,
                                                                  f"ckpt_worker_{id(self)}")
        self.manager = tf.train.CheckpointManager(self.checkpoint, write_dir, max_to_keep=2)
        # `train_steps(iterator, count)`: `count` micro-batches in one call (see `multi_step`).
        # With XLA each replica's step is one compiled function.
        step = tf.function(self._step_fn, jit_compile=True) if marked else self._step_fn
        self.train_steps = multi_step(self.strategy, step)
        # traced once for every evaluation, compiled with XLA where training steps are
        self.decode = decoding_function(self.model, self.strategy, marked)

    # ------------------------------------------------------------------ steps

    def _step_fn(self, batch):
        with tf.GradientTape() as tape:
            out = self.model(batch, training=True, step=self.optimizer.iterations)
            per_sample = self.model.per_sample_loss(batch, out, xla=self.xla)
            loss = tf.nn.compute_average_loss(per_sample, global_batch_size=self.global_batch)
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.model.trainable_variables)
        self.optimizer.apply(grads, self.model.trainable_variables)
        return loss

    # ------------------------------------------------------------------ run

    def last_checkpoint(self) -> str:
        return tf.train.latest_checkpoint(self.ckpt_dir) or "none (first epoch)"

    def restore(self, force: bool = False) -> tuple[int, int]:
        """Load the chief's latest checkpoint if any; returns the (epoch, micro-batch) to start.

        Refused (CheckpointMismatch, naming what changed) when the config differs from the
        run's config.yaml in a key outside RESUMABLE, or the steps per epoch changed (another
        replica count or other records); `force` resumes anyway and prints the changes (with
        other steps per epoch, an epoch stopped mid-way starts again at its first micro-batch).
        """
        latest = tf.train.latest_checkpoint(self.ckpt_dir)
        if not latest:
            return 0, 0
        saved = os.path.join(self.dir, "config.yaml")
        changes = (config_changes(_read_config(saved), self.cfg) if tf.io.gfile.exists(saved)
                   else [])
        if changes and not force:  # before restoring: a changed model would not even load
            raise _refusal(latest, changes)
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError) as e:
            raise CheckpointMismatch(f"{latest} does not fit this model ({e})") from e
        steps = int(self.position["steps_per_epoch"].numpy())
        if steps != self.steps:
            changes.append(f"steps per epoch was {steps}, now {self.steps} (another replica "
                           "count or other records)")
            if not force:
                raise _refusal(latest, changes)
            for key in ("step", "loss_sum", "seconds"):  # other epochs: redo a stopped one
                self.position[key].assign(0)
        if changes and self.verbose:
            print(f"resuming {latest} despite: " + "; ".join(changes), flush=True)
        return int(self.position["epoch"].numpy()), int(self.position["step"].numpy())

    def fit(self, resume: bool = False, force_resume: bool = False) -> dict:
        """Train to `train.epochs`; returns the last validation scores.

        `resume` continues from the latest checkpoint, at the micro-batch it was written at
        (`force_resume`: see `restore`). Micro-batches run `self.per_call` at a time (the last
        call of an epoch takes what is left of it). Raises TimeLimitReached, after writing a
        checkpoint, when the next call would not end within `train.time_limit_hours`; every
        session trains at least one call.
        """
        cfg = self.cfg
        tf.io.gfile.makedirs(self.dir)
        if not resume and tf.train.latest_checkpoint(self.ckpt_dir):
            raise FileExistsError(f"{self.dir} already holds checkpoints; pass --resume to "
                                  "continue or choose another name/seed")
        start, first = self.restore(force_resume) if resume else (0, 0)
        if self.chief:
            with tf.io.gfile.GFile(os.path.join(self.dir, "config.yaml"), "w") as f:
                f.write(yaml.safe_dump(_plain(dataclasses.asdict(cfg)), sort_keys=False))
        data = self.strategy.distribute_datasets_from_function(
            lambda ctx: self.input_dataset(ctx, start, first))
        batches = iter(data)
        writer = tf.summary.create_file_writer(os.path.join(self.dir, "tb")) if self.chief \
            else tf.summary.create_noop_writer()
        result, trained, clock = {}, 0, self.limit.clock
        try:
            for epoch in range(start, cfg.train.epochs):
                evaluated = (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs
                begin = first if epoch == start else 0
                # what the checkpoint carried of this epoch (zero unless it stopped mid-epoch)
                carried_loss = float(self.position["loss_sum"].numpy())
                carried_seconds = float(self.position["seconds"].numpy())
                bar = keras.utils.Progbar(self.steps, stateful_metrics=["lr", "seq/s"],
                                          verbose=1 if self.verbose else 0)
                t0, losses = clock(), []
                for step in range(begin, self.steps, self.per_call):
                    count = min(self.per_call, self.steps - step)
                    if trained and not self.limit.fits(evaluated and step + count == self.steps):
                        bar.update(step, finalize=True)
                        self._stop(epoch, step, carried_loss + sum(losses),
                                   carried_seconds + clock() - t0)
                    with self.limit.timing("step"):
                        chunk = self._train_call(batches, epoch, step, count)
                    trained += count
                    losses += chunk
                    rate = len(losses) * self.global_batch / (clock() - t0)
                    # Progbar weights each "loss" by the micro-batches since its previous call
                    bar.update(step + count, [("loss", float(np.mean(chunk))),
                                              ("lr", self.learning_rate()), ("seq/s", rate)])
                row = {"epoch": epoch + 1,
                       "loss": (carried_loss + sum(losses)) / (begin + len(losses)),
                       "lr": self.learning_rate(), "seconds": carried_seconds + clock() - t0}
                self._save(epoch + 1, 0, 0.0, 0.0)
                if evaluated:
                    with self.limit.timing("evaluate"):
                        result = self.evaluate(epoch + 1)
                    row.update(result)
                self._log(row, writer)
        finally:
            writer.flush()
        if self.chief:
            self.model.save_weights(os.path.join(self.dir, "model.weights.h5"))
            plot_history(self.dir)
        return result

    def input_dataset(self, ctx: tf.distribute.InputContext | None, start: int,
                      first: int) -> tf.data.Dataset:
        """One input pipeline's training stream from micro-batch `first` of epoch `start`.

        Each input pipeline feeds all replicas of its host, one per-replica batch each per
        micro-batch (8 per micro-batch on one 8-core TPU host); `ctx` None: one pipeline for
        one replica.
        """
        per_step = ctx.num_replicas_in_sync // ctx.num_input_pipelines if ctx else 1
        return pipeline.train_dataset(self.cfg.data, self.cfg.seed, self.cfg.train.epochs,
                                      start, ctx, steps_per_epoch=self.steps * per_step
                                      ).skip(first * per_step)

    def _train_call(self, batches, epoch: int, step: int, count: int) -> list[float]:
        """Micro-batches `step + 1` to `step + count` of the epoch in one call; their losses.

        A lost peer or a non-finite loss (named by its micro-batch) stops the run with a clear
        error.
        """
        try:
            losses = self.train_steps(batches, count).numpy()
        except _PEER_ERRORS as e:
            raise WorkerLost(
                f"lost another worker at epoch {epoch + 1}, steps {step + 1}-{step + count} "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); last "
                f"checkpoint: {self.last_checkpoint()}. Restart every worker with "
                "--resume.") from e
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            raise TrainingDiverged(
                f"loss became {losses[bad[0]]} at epoch {epoch + 1}, step {step + bad[0] + 1}; "
                f"last good checkpoint: {self.last_checkpoint()}")
        return losses.tolist()

    def _save(self, epoch: int, step: int, loss_sum: float, seconds: float) -> None:
        """Checkpoint at `step` micro-batches into epoch `epoch` (numbered by micro-batches)."""
        for key, value in (("epoch", epoch), ("step", step), ("loss_sum", loss_sum),
                           ("seconds", seconds), ("steps_per_epoch", self.steps)):
            self.position[key].assign(value)
        with self.limit.timing("save"):
            self.manager.save(checkpoint_number=epoch * self.steps + step)

    def _stop(self, epoch: int, step: int, loss_sum: float, seconds: float) -> None:
        """Checkpoint mid-epoch (at an epoch's start the epoch checkpoint is current); raise."""
        if step:
            self._save(epoch, step, loss_sum, seconds)
        where = (f"in epoch {epoch + 1} after step {step} of {self.steps}" if step
                 else f"after epoch {epoch}")
        raise TimeLimitReached(f"stopped at the time limit ({self.cfg.train.time_limit_hours:g} "
                               f"h) {where}; checkpoint {self.last_checkpoint()}", epoch, step)

    def learning_rate(self) -> float:
        opt = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        return float(opt.learning_rate.numpy() if hasattr(opt.learning_rate, "numpy")
                     else opt.learning_rate)

    def evaluate(self, epoch: int | None = None) -> dict:
        """Greedy-decode the validation fold; scores raw and after the dummy-phrase rule."""
        rows = predict(self.strategy, self.decode, self.cfg, self.cfg.train.eval_batch_size)
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
        new = not tf.io.gfile.exists(path)
        with tf.io.gfile.GFile(path, "a") as f:
            w = csv.DictWriter(f, fields)
            if new:
                w.writeheader()
            w.writerow({k: row.get(k, "") for k in fields})
        with writer.as_default():
            for k, v in row.items():
                if k != "epoch":
                    tf.summary.scalar(k, v, step=row["epoch"])


def predict(strategy: tf.distribute.Strategy, decode: Callable, cfg: config.Config,
            batch_size: int) -> list[dict]:
    """Per-sequence greedy predictions on the validation fold (raw and post-processed), in
    record order. `decode` is `decoding_function(model, strategy)`: each replica decodes its
    own batch of `batch_size // replicas` clips (every host decodes the whole fold: the chief
    writes it)."""
    data = strategy.distribute_datasets_from_function(
        lambda ctx: pipeline.static_eval_dataset(
            cfg.data, ctx.get_per_replica_batch_size(batch_size),
            ctx.num_replicas_in_sync // ctx.num_input_pipelines))

    def gather(values) -> np.ndarray:
        return np.concatenate([v.numpy() for v in strategy.experimental_local_results(values)])

    rows = []
    for batch in data:
        ids, confidence = (gather(v) for v in decode(batch))
        valid, n_frames = gather(batch["valid"]), gather(batch["n_frames"])
        sequence_ids, labels = gather(batch["sequence_id"]), gather(batch["labels"])
        for i in np.flatnonzero(valid):
            text = vocab.decode(ids[i, 1:])  # skip SOS; stops at EOS
            c = None if confidence[i] < 0 else float(confidence[i])
            rows.append({"sequence_id": int(sequence_ids[i]),
                         "phrase": vocab.decode(labels[i]), "prediction": text,
                         "prediction_pp": inference.postprocess(text, int(n_frames[i]), c),
                         "confidence": "" if c is None else f"{c:.4f}",
                         "n_frames": int(n_frames[i])})
    return rows


def _refusal(latest: str, changes: list[str]) -> CheckpointMismatch:
    return CheckpointMismatch(f"{latest} was written with another configuration: "
                              + "; ".join(changes) + ". Resuming would not continue the same "
                              "run; pass --force-resume to resume anyway.")


def _read_config(path: str) -> config.Config:
    """A run's config.yaml, from any tf.io.gfile path."""
    with tf.io.gfile.GFile(path) as f:
        return config.from_dict(config.Config, yaml.safe_load(f.read()))


def _flatten(tree: dict, prefix: str = "") -> dict:
    """{"data.augment.flip": 0.5, ...} from nested dicts."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _write_csv(path: str, rows: list[dict]) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
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


def read_history(directory: str):
    """A run folder's history.csv (any tf.io.gfile folder) as a pandas DataFrame, a row per
    epoch; columns not measured in an epoch (score between evaluations) are NaN."""
    import pandas as pd

    with tf.io.gfile.GFile(os.path.join(directory, "history.csv")) as f:
        return pd.read_csv(f)


def plot_history(directory: str) -> list[str]:
    """loss.png, score.png, lr.png from history.csv (any tf.io.gfile folder)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = read_history(directory)
    out = []
    for key, label in (("loss", "training loss"), ("score", "validation score"),
                       ("lr", "learning rate")):
        measured = history.dropna(subset=[key]) if key in history else history.iloc[:0]
        if measured.empty:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(measured["epoch"], measured[key], marker="o" if key == "score" else None)
        if key == "score":
            pp = measured.dropna(subset=["score_pp"])
            ax.plot(pp["epoch"], pp["score_pp"], marker=".", label="after dummy-phrase rule")
            ax.legend()
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        fig.tight_layout()
        path = os.path.join(directory, f"{key}.png")
        save_png(fig, path)
        out.append(path)
    return out


def save_png(fig, path: str) -> None:
    """Write a matplotlib figure as PNG to any tf.io.gfile path and close it."""
    import matplotlib.pyplot as plt

    png = io.BytesIO()  # matplotlib writes local files only
    fig.savefig(png, format="png", dpi=90)
    plt.close(fig)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(png.getvalue())
