"""The training loop on tiny models: a time-limit stop and resume equal an uninterrupted run
(also with several micro-batches per call), every schedule counts optimizer updates,
divergence stops cleanly, evaluation traces its decoder once, every output goes through
tf.io.gfile, and the strategy never falls back to the CPU when a TPU is expected."""

from __future__ import annotations

import csv
import io
import os
import shlex
import shutil
import uuid
from collections.abc import Callable

import numpy as np
import pytest
import tensorflow as tf

from asl_keras import config
from asl_keras.training import optimizers, run, strategy, trainer
from tests.paths import config_path


def tiny_overrides(records, tmp_path, **train) -> list[str]:
    overrides = [f"data.records={records}", "data.max_len=32", "data.buffer_len=64",
                 "data.batch_size=8", "data.shuffle_buffer=32", "model.dim=16",
                 "model.blocks=1", "model.decoder_ffn=32", "model.kernel_size=5",
                 "model.backward_decoder=true", f"train.runs_dir={tmp_path}",
                 "train.grad_accumulation=2", "train.eval_batch_size=16", "train.epochs=2",
                 "train.eval_every=2", "train.warmup_epochs=0.5", "data.scores=null"]
    return overrides + [f"train.{k}={v}" for k, v in train.items()]


def tiny_config(records, tmp_path, **train) -> config.Config:
    return config.load(config_path("cfg_2_squeezeformer.yaml"),
                       tiny_overrides(records, tmp_path, **train))


def weights(t: trainer.Trainer) -> list[np.ndarray]:
    return [v.numpy() for v in t.model.weights]


def history(run_folder: str) -> list[dict]:
    with tf.io.gfile.GFile(f"{run_folder}/history.csv") as f:
        return list(csv.DictReader(io.StringIO(f.read())))


class OneSecondPerStep:
    """A clock in which each micro-batch of the trainer it is attached to lasts 1 s and
    nothing else takes time."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def attach(self, t: trainer.Trainer) -> None:
        steps = t.train_steps

        def one_second_steps(iterator, count):
            self.now += count
            return steps(iterator, count)

        t.train_steps = one_second_steps


def timed_trainer(cfg, steps: int) -> trainer.Trainer:
    """A trainer whose session stops at the time limit after `steps` micro-batches: the
    limit is `steps + 0.5` s, and each check budgets the longest step (1 s) before the next."""
    cfg.train.time_limit_hours = (steps + 0.5) / 3600
    clock = OneSecondPerStep()
    t = trainer.Trainer(cfg, verbose=False, clock=clock)
    clock.attach(t)
    return t


def test_a_resumed_stream_starts_at_the_first_untrained_micro_batch(synthetic_records,
                                                                    tmp_path):
    """The input of a session resumed at micro-batch 3 of an epoch is the uninterrupted
    stream from its 4th micro-batch on: the same clips in the same order (no training needed
    to check it; the slow resume tests check the weights)."""
    t = trainer.Trainer(tiny_config(synthetic_records, tmp_path), verbose=False)
    whole = [b["sequence_id"].numpy() for b in t.input_dataset(None, 0, 0).take(t.steps + 3)]
    for start, first in ((0, 3), (1, 1)):
        resumed = [b["sequence_id"].numpy() for b in t.input_dataset(None, start, first).take(2)]
        at = start * t.steps + first
        np.testing.assert_array_equal(resumed, whole[at:at + 2])


@pytest.fixture(scope="session")
def uninterrupted_run(synthetic_records, tmp_path_factory) -> trainer.Trainer:
    """The tiny run trained in one session at one micro-batch per call, once per process
    (session-scoped: a module's fixture would be made again after another module's test)."""
    t = trainer.Trainer(tiny_config(synthetic_records, tmp_path_factory.mktemp("a"),
                                    steps_per_execution=1), verbose=False)
    t.fit()
    return t


@pytest.mark.slow
@pytest.mark.xdist_group("uninterrupted_run")  # one process trains the run both compare with
@pytest.mark.parametrize("per_call,stop_at", [(1, 3), (5, 5)])
def test_a_time_limit_stop_mid_epoch_resumes_to_the_uninterrupted_weights(synthetic_records,
                                                                          tmp_path, per_call,
                                                                          stop_at,
                                                                          uninterrupted_run):
    """Stopped after an odd number of micro-batches (between the 2 of an accumulated update),
    resumed to the end: the same weights, optimizer step and history as one uninterrupted
    session of one micro-batch per call, also when the stopped and resumed sessions ran 5 per
    call (the first call of a session always runs; the epochs then end with shorter calls)."""
    a = uninterrupted_run
    b = timed_trainer(tiny_config(synthetic_records, tmp_path / "b",
                                  steps_per_execution=per_call), steps=stop_at)
    assert b.steps > stop_at and b.steps % 5  # the stop falls inside epoch 1
    with pytest.raises(trainer.TimeLimitReached,
                       match=rf"in epoch 1 after step {stop_at} of {b.steps}") as stop:
        b.fit()
    assert (stop.value.epoch, stop.value.step) == (0, stop_at)
    assert tf.train.latest_checkpoint(b.ckpt_dir).endswith(f"ckpt-{stop_at}")
    b2 = trainer.Trainer(tiny_config(synthetic_records, tmp_path / "b",
                                     steps_per_execution=per_call), verbose=False)
    b2.fit(resume=True)
    for x, y in zip(weights(a), weights(b2), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-6)
    assert int(b2.optimizer.iterations) == int(a.optimizer.iterations)
    hist_a, hist_b = history(a.dir), history(b2.dir)
    assert [r["epoch"] for r in hist_b] == ["1", "2"] and hist_b[1]["score"] != ""
    for ra, rb in zip(hist_a, hist_b, strict=True):  # epoch 1's loss spans both sessions
        assert float(rb["loss"]) == pytest.approx(float(ra["loss"]), rel=1e-5)
    for name in ("model.weights.h5", "loss.png", "lr.png", "predictions_epoch2.csv"):
        assert os.path.exists(os.path.join(b2.dir, name)), name


@pytest.mark.slow
def test_a_run_in_a_ram_filesystem_writes_nothing_locally(synthetic_records, tmp_path,
                                                          monkeypatch):
    """Every output goes through tf.io.gfile: runs_dir=ram://... (like gs://) trains, stops at
    an epoch's end, resumes, and the working directory stays empty."""
    runs = f"ram://{uuid.uuid4().hex}/runs"
    cfg, cfg_again = (tiny_config(synthetic_records, runs) for _ in range(2))  # reads configs/
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    first = timed_trainer(cfg, steps=trainer.steps_per_epoch(cfg, 1))  # ends after epoch 1
    with pytest.raises(trainer.TimeLimitReached, match="after epoch 1;"):
        first.fit()
    again = trainer.Trainer(cfg_again, verbose=False)
    result = again.fit(resume=True)
    assert set(result) == {"score", "score_pp", "score_damerau"}
    assert os.listdir(work) == []
    assert [r["epoch"] for r in history(again.dir)] == ["1", "2"]
    assert again.dir.startswith("ram://")
    files = tf.io.gfile.listdir(again.dir)
    for name in ("config.yaml", "model.weights.h5", "loss.png", "score.png",
                 "predictions_epoch2.csv"):
        assert name in files, name
    assert tf.io.gfile.listdir(f"{again.dir}/tb")  # the TensorBoard events


def record_model_steps(t: trainer.Trainer) -> Callable[[], list[int]]:
    """Make `t.model` record the `step` of each training call; returns a reader of them."""
    steps = tf.Variable(tf.fill([64], tf.constant(-1, tf.int64)), trainable=False)
    calls = tf.Variable(0, trainable=False)
    call = t.model.call

    def recording_call(inputs, training=False, step=None):
        steps.scatter_nd_update([[calls]], [tf.cast(step, tf.int64)])
        calls.assign_add(1)
        return call(inputs, training=training, step=step)

    t.model.call = recording_call
    return lambda: [int(s) for s in steps.numpy()[:int(calls.numpy())]]


def test_the_schedules_and_the_learning_rate_count_optimizer_updates(synthetic_records,
                                                                     tmp_path):
    """4 micro-batches per update: after 12 micro-batches the model's schedules and the
    learning rate read update 3, and a session resumed there goes on at that counter (the
    learning rate does not move before the 4th update has been applied)."""
    cfg = tiny_config(synthetic_records, tmp_path, grad_accumulation=4, warmup_epochs=3,
                      epochs=3, eval_every=3)
    schedule = optimizers.make_schedule(cfg.train, trainer.steps_per_epoch(cfg, 1))
    first = timed_trainer(cfg, steps=12)
    received = record_model_steps(first)
    with pytest.raises(trainer.TimeLimitReached):
        first.fit()
    assert received() == [0] * 4 + [1] * 4 + [2] * 4
    assert int(first.optimizer.iterations) == 3
    assert 0 < first.learning_rate() == pytest.approx(float(schedule(3)), rel=1e-6)
    assert first.learning_rate() < cfg.train.learning_rate  # still warming up
    second = timed_trainer(tiny_config(synthetic_records, tmp_path, grad_accumulation=4,
                                       warmup_epochs=3, epochs=3, eval_every=3), steps=3)
    received = record_model_steps(second)
    with pytest.raises(trainer.TimeLimitReached):
        second.fit(resume=True)
    assert received() == [3, 3, 3]
    assert int(second.optimizer.iterations) == 3
    assert second.learning_rate() == pytest.approx(first.learning_rate(), rel=1e-6)


def test_evaluations_reuse_one_traced_decoder(synthetic_records, tmp_path):
    """The decoding function is traced in the first evaluation only (a Python side effect
    in it runs once per trace)."""
    t = trainer.Trainer(tiny_config(synthetic_records, tmp_path), verbose=False)
    traces = []
    encode = t.model.encode

    def counting_encode(*args, **kwargs):
        traces.append(1)
        return encode(*args, **kwargs)

    t.model.encode = counting_encode
    first = t.evaluate()
    traced = len(traces)
    assert traced >= 1
    assert t.evaluate() == first
    assert len(traces) == traced


@pytest.fixture(scope="session")
def finished_run(synthetic_records, tmp_path_factory) -> str:
    """The runs folder of a finished one-epoch tiny run, trained once per test process; tests
    work on copies (`copy_of`)."""
    runs = tmp_path_factory.mktemp("finished")
    trainer.Trainer(tiny_config(synthetic_records, runs, epochs=1), verbose=False).fit()
    return str(runs)


def copy_of(finished_run: str, tmp_path) -> str:
    """A copy of `finished_run` in `tmp_path` (its config.yaml names the original runs folder,
    which a resume may change)."""
    shutil.copytree(finished_run, tmp_path, dirs_exist_ok=True)
    return str(tmp_path)


def test_resuming_with_a_changed_schedule_is_refused_unless_forced(synthetic_records, tmp_path,
                                                                   finished_run):
    tmp_path = copy_of(finished_run, tmp_path)
    changed = tiny_config(synthetic_records, tmp_path, epochs=2, learning_rate=0.001,
                          eval_every=1)
    with pytest.raises(trainer.CheckpointMismatch) as refused:
        trainer.Trainer(changed, verbose=False).fit(resume=True)
    message = str(refused.value)
    assert "train.epochs was 1, now 2" in message and "--force-resume" in message
    assert "train.learning_rate was 0.0045, now 0.001" in message
    assert "eval_every" not in message  # evaluation does not shape the run
    trainer.Trainer(changed, verbose=False).fit(resume=True, force_resume=True)
    assert [r["epoch"] for r in history(trainer.run_dir(changed))] == ["1", "2"]


def test_starting_over_an_existing_run_is_refused(synthetic_records, tmp_path, finished_run):
    cfg = tiny_config(synthetic_records, copy_of(finished_run, tmp_path), epochs=1)
    with pytest.raises(FileExistsError, match="pass --resume"):
        trainer.Trainer(cfg, verbose=False).fit()


def test_a_loss_going_non_finite_inside_a_call_is_named_by_its_micro_batch(synthetic_records,
                                                                          tmp_path):
    """4 micro-batches per call, 2 per update: the loss is NaN from the 3rd micro-batch
    (update 1) on; the first call stops the run, naming micro-batch 3."""
    t = trainer.Trainer(tiny_config(synthetic_records, tmp_path, epochs=1,
                                    steps_per_execution=4), verbose=False)
    per_sample_loss = t.model.per_sample_loss

    def nan_from_update_1(batch, out, xla=False):
        loss = per_sample_loss(batch, out, xla)
        return tf.where(t.optimizer.iterations >= 1, np.nan, loss)

    t.model.per_sample_loss = nan_from_update_1
    with pytest.raises(trainer.TrainingDiverged, match=r"loss became nan at epoch 1, step 3;"):
        t.fit()
    assert int(t.optimizer.iterations) == 2  # one call ran: 4 micro-batches
    assert t.manager.latest_checkpoint is None


def test_calls_of_every_length_share_one_trace(synthetic_records, tmp_path):
    """5 micro-batches per call through an epoch that ends with a shorter call, a checkpoint,
    and another epoch: one trace of the training step (a Python side effect in it runs once
    per trace), and every micro-batch of both epochs trained and checkpointed."""
    cfg = tiny_config(synthetic_records, tmp_path, steps_per_execution=5, eval_every=100)
    t = trainer.Trainer(cfg, verbose=False)
    assert t.per_call == 5 and t.steps % 5
    traces = []
    per_sample_loss = t.model.per_sample_loss

    def counting(batch, out, xla=False):
        traces.append(1)
        return per_sample_loss(batch, out, xla)

    t.model.per_sample_loss = counting
    t.fit()
    assert len(traces) == 1
    assert int(t.optimizer.iterations) == 2 * t.steps // 2
    assert tf.train.latest_checkpoint(t.ckpt_dir).endswith(f"ckpt-{2 * t.steps}")
    assert [r["epoch"] for r in history(t.dir)] == ["1", "2"]


def test_steps_per_execution_is_chosen_by_device_unless_set():
    default = tf.distribute.get_strategy()
    for auto in (None, 0):
        assert strategy.steps_per_execution(default, auto) == 1  # a CPU
    assert strategy.steps_per_execution(default, 5) == 5
    cpus = [c.name for c in tf.config.list_logical_devices("CPU")[:2]]
    assert strategy.steps_per_execution(tf.distribute.MirroredStrategy(cpus), None) == 1


def test_non_finite_loss_stops_with_a_clear_message(synthetic_records, tmp_path):
    cfg = tiny_config(synthetic_records, tmp_path, epochs=1)
    t = trainer.Trainer(cfg, verbose=False)
    t.model.decoder.lm_head.kernel.assign(np.full(t.model.decoder.lm_head.kernel.shape, np.nan,
                                                  np.float32))
    with pytest.raises(trainer.TrainingDiverged, match=r"loss became nan at epoch 1, step 1"):
        t.fit()
    assert t.manager.latest_checkpoint is None  # nothing bad was saved


def test_the_time_limit_budgets_the_longest_step_checkpoint_and_evaluation():
    now = [0.0]
    limit = trainer.TimeLimit(100 / 3600, clock=lambda: now[0])
    for kind, seconds in (("step", 10), ("step", 4), ("save", 5), ("evaluate", 30)):
        with limit.timing(kind):
            now[0] += seconds
    now[0] = 85.0  # + the longest step (10) and save (5): just in time, unless it evaluates
    assert limit.fits(evaluates=False) and not limit.fits(evaluates=True)
    now[0] = 85.5
    assert not limit.fits(evaluates=False)
    for hours in (None, 0):
        assert trainer.TimeLimit(hours, clock=lambda: 1e9).fits(evaluates=True)


@pytest.mark.slow
def test_resuming_with_other_steps_per_epoch_is_refused_unless_forced(synthetic_records,
                                                                      tmp_path):
    """Two replicas halve the steps per epoch: the saved step means nothing there. Forced, the
    stopped epoch starts again at its first micro-batch and trains to its end (its one input
    pipeline gives each micro-batch two per-replica batches)."""
    stopped = timed_trainer(tiny_config(synthetic_records, tmp_path, epochs=1,
                                        grad_accumulation=1), steps=3)
    with pytest.raises(trainer.TimeLimitReached):
        stopped.fit()
    cpus = [c.name for c in tf.config.list_logical_devices("CPU")[:2]]

    def on_two_replicas():
        return trainer.Trainer(tiny_config(synthetic_records, tmp_path, epochs=1,
                                           grad_accumulation=1),
                               strategy=tf.distribute.MirroredStrategy(cpus), verbose=False)

    with pytest.raises(trainer.CheckpointMismatch,
                       match=rf"steps per epoch was {stopped.steps}, now {stopped.steps // 2} "
                             r"\(another replica count"):
        on_two_replicas().fit(resume=True)
    forced = on_two_replicas()
    forced.fit(resume=True, force_resume=True)
    assert int(stopped.optimizer.iterations) == 3
    assert int(forced.optimizer.iterations.numpy()) == 3 + forced.steps  # the whole epoch again
    assert [r["epoch"] for r in history(forced.dir)] == ["1"]


def transformers_cosine(peak: float, warmup: int, total: int, step: int) -> float:
    """`transformers.get_cosine_schedule_with_warmup(num_cycles=0.5)` at `step`, in float64."""
    if step < warmup:
        return peak * step / max(warmup, 1)
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return peak * 0.5 * (1.0 + np.cos(np.pi * progress))


@pytest.mark.parametrize("peak,warmup,total", [(1.0, 10, 110), (4.5e-3, 937, 9375),
                                               (2e-3, 0, 50), (1e-3, 7, 7), (1e-3, 9, 5),
                                               (1e-3, 1, 2)])
def test_warmup_cosine_is_the_transformers_schedule(peak, warmup, total):
    """At the edges of the warmup and of the decay, past the end, and at 200 steps between;
    eagerly and in a graph at an int64 step (the optimizer's counter)."""
    steps = sorted({0, 1, max(warmup - 1, 0), warmup, warmup + 1, (warmup + total) // 2,
                    total - 1, total, total + 1, 3 * total + 5,
                    *np.linspace(0, total + 10, 200).astype(int).tolist()})
    s = optimizers.warmup_cosine(peak, warmup, total)
    graph = tf.function(s)
    expected = [transformers_cosine(peak, warmup, total, step) for step in steps]
    np.testing.assert_allclose([float(s(step)) for step in steps], expected,
                               rtol=1e-6, atol=1e-7 * peak)
    np.testing.assert_allclose([float(graph(tf.constant(step, tf.int64))) for step in steps],
                               expected, rtol=1e-6, atol=1e-7 * peak)


def test_per_update_reads_the_schedule_at_the_update_of_a_micro_batch():
    per_update = optimizers.PerUpdate(optimizers.warmup_cosine(1.0, warmup=10, total=110), 4)
    assert [float(per_update(m)) for m in (11, 12, 15, 16)] == pytest.approx([0.2, 0.3, 0.3, 0.4])
    again = optimizers.PerUpdate.from_config(per_update.get_config())
    assert float(again(40)) == pytest.approx(1.0) and again.micro_batches == 4


@pytest.fixture
def no_tpu_here(monkeypatch, tmp_path):
    """A machine without TPU variables or TPU device files."""
    for name in strategy.TPU_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(strategy, "TPU_DEVICE_FILES", (str(tmp_path / "accel*"),))
    return tmp_path


def test_default_strategy_and_precision_on_this_cpu(no_tpu_here):
    s = strategy.pick_strategy("default")
    assert s.num_replicas_in_sync == 1 and strategy.precision_policy(s) == "float32"
    with pytest.raises(strategy.StrategyError,
                       match=r"no TPU could be initialised, but --strategy tpu was given; "
                             r"tried TPUClusterResolver\(tpu=None\): ValueError: .*; "
                             r"TPUClusterResolver\(tpu='local'\): NotFoundError: TPUs not found"):
        strategy.pick_strategy("tpu")


def test_auto_without_a_tpu_in_sight_does_not_look_for_one(no_tpu_here, monkeypatch):
    def no_call(tpu):
        raise AssertionError(f"tried a TPU at {tpu!r}")

    monkeypatch.setattr(strategy, "connect_tpu", no_call)
    assert strategy.pick_strategy("auto") is tf.distribute.get_strategy()


@pytest.mark.parametrize("variables,tried", [
    ({"TPU_ACCELERATOR_TYPE": "v3-8"}, ["local"]),  # a TPU VM
    ({"TPU_WORKER_ID": "0", "TPU_CHIPS_PER_HOST_BOUNDS": "2,2,1"}, ["local"]),  # Kaggle's
    ({"TPU_NAME": "my-tpu"}, [None]),  # a Cloud TPU node: the resolver reads TPU_NAME
    ({"COLAB_TPU_ADDR": "10.0.0.2:8470"}, ["grpc://10.0.0.2:8470"]),  # Colab's TPU node
])
def test_an_expected_tpu_that_fails_is_an_error_not_a_cpu_run(no_tpu_here, monkeypatch,
                                                              variables, tried):
    calls = []

    def failing(tpu):
        calls.append(tpu)
        raise tf.errors.NotFoundError(None, None, "TPUs not found in the cluster")

    monkeypatch.setattr(strategy, "connect_tpu", failing)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(strategy.StrategyError) as e:
        strategy.pick_strategy("auto")
    assert calls == tried
    message = str(e.value)
    assert "a TPU is expected here" in message and "--strategy default" in message
    assert all(f"{k}={v}" in message for k, v in variables.items())
    assert f"TPUClusterResolver(tpu={tried[0]!r}): NotFoundError: TPUs not found" in message


def test_variables_set_without_a_tpu_are_no_sign_of_one(no_tpu_here, monkeypatch):
    """JAX's import sets TPU_SKIP_MDS_QUERY=1 exactly when it finds no TPU chips, and
    TensorFlow's sets TPU_ML_PLATFORM: neither may send `auto` looking for a TPU."""
    monkeypatch.setenv("TPU_SKIP_MDS_QUERY", "1")
    monkeypatch.setenv("TPU_ML_PLATFORM", "Tensorflow")
    assert strategy.tpu_signals() == []
    assert strategy.pick_strategy("auto") is tf.distribute.get_strategy()


def test_tpu_device_files_make_a_tpu_expected_and_auto_uses_it(no_tpu_here, monkeypatch):
    (no_tpu_here / "accel0").touch()
    chosen, calls = object(), []
    monkeypatch.setattr(strategy, "connect_tpu", lambda tpu: calls.append(tpu) or chosen)
    assert strategy.tpu_signals() == [str(no_tpu_here / "accel0")]
    assert strategy.pick_strategy("auto") is chosen and calls == ["local"]


def test_the_strategy_line_names_its_devices():
    cpus = [c.name for c in tf.config.list_logical_devices("CPU")[:2]]
    assert strategy.describe(tf.distribute.get_strategy()) == f"default, 1 replica on {cpus[0]}"
    mirrored = strategy.describe(tf.distribute.MirroredStrategy(cpus))
    assert mirrored.startswith("MirroredStrategy, 2 replicas on ") and mirrored.count("CPU") == 2


def test_an_unavailable_tpu_stops_train_tf_with_exit_code_2(synthetic_records, no_tpu_here,
                                                            capsys):
    args = run.parse_args(["--config", config_path("cfg_2_squeezeformer.yaml"), "--strategy", "tpu",
                           f"data.records={synthetic_records}", f"train.runs_dir={no_tpu_here}"])
    assert run.main_train(args) == run.EXIT_ERROR
    assert "error: no TPU could be initialised" in capsys.readouterr().err
    assert os.listdir(no_tpu_here) == []  # nothing trained


def test_mirrored_on_two_logical_cpus_gives_the_single_device_loss(synthetic_records, tmp_path):
    """Per-sample losses + compute_average_loss: the loss does not scale with replicas.

    Without the backward decoder: its per-sample loss is normalised by the longest label of
    the (per-replica) batch, a reference quirk that legitimately depends on the split.
    """
    cpus = tf.config.list_logical_devices("CPU")
    assert len(cpus) >= 2, "tests/conftest.py configures 2 logical CPUs"
    cfg = tiny_config(synthetic_records, tmp_path)
    cfg.model.backward_decoder = False
    one = trainer.Trainer(cfg, strategy=tf.distribute.get_strategy(), verbose=False)
    two = trainer.Trainer(cfg, strategy=tf.distribute.MirroredStrategy([c.name for c in cpus[:2]]),
                          verbose=False)
    two.model.set_weights(one.model.get_weights())
    batch = next(iter(trainer.pipeline.eval_dataset(cfg.data, batch_size=16)))
    out = one.model(batch)
    single = float(np.mean(one.model.per_sample_loss(batch, out)))
    dist = two.strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(batch))
    per_replica = two.strategy.run(
        lambda b: tf.nn.compute_average_loss(two.model.per_sample_loss(b, two.model(b)),
                                             global_batch_size=16), args=(next(iter(dist)),))
    mirrored = float(two.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))
    assert mirrored == pytest.approx(single, rel=1e-5)


def test_fold_out_of_range_is_a_config_error(synthetic_records, tmp_path):
    cfg = tiny_config(synthetic_records, tmp_path)
    cfg.data.fold = 7
    with pytest.raises(config.ConfigError, match=r"data.fold: 7 is out of range.*\[0, 1, 2, 3\]"):
        trainer.Trainer(cfg, verbose=False)


def test_resuming_with_another_architecture_is_refused(synthetic_records, tmp_path,
                                                       finished_run):
    other = tiny_config(synthetic_records, copy_of(finished_run, tmp_path), epochs=1)
    other.model.dim = 24
    with pytest.raises(trainer.CheckpointMismatch, match="model.dim was 16, now 24"):
        trainer.Trainer(other, verbose=False).fit(resume=True)


def test_train_tf_exits_3_at_the_time_limit_and_prints_the_resume_command(synthetic_records,
                                                                         tmp_path, capsys):
    argv = ["--config", config_path("cfg_2_squeezeformer.yaml"), "--seed", "0",
            *tiny_overrides(synthetic_records, tmp_path, epochs=1, time_limit_hours="1.0e-9")]
    assert run.main_train(run.parse_args(argv)) == run.EXIT_TIME_LIMIT
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("stopped at the time limit (1e-09 h) in epoch 1 after step 1 of ")
    command = shlex.split(last.split("; resume with: ")[1])
    assert command == ["python", "train_tf.py", *argv, "--resume"]
    # that command, without the limit (which a resumed run may change), finishes the run
    resumed = run.parse_args([*command[2:-1], "train.time_limit_hours=null", "--resume"])
    assert run.main_train(resumed) == run.EXIT_FINISHED
    assert "done: " in capsys.readouterr().out
    assert run.parse_args(["--config", "c.yaml", "--resume", "--force-resume"]).force_resume


def test_missing_data_is_named(tmp_path):
    args = run.parse_args(["--config", config_path("cfg_1.yaml"), f"data.records={tmp_path}/none",
                           f"data.kaggle_dir={tmp_path}/kaggle"])
    assert run.main_train(args) == run.EXIT_ERROR
    with pytest.raises(FileNotFoundError, match=r"kaggle/train.csv not found"):
        run.prepare_records(run.resolve_config(args))


@pytest.mark.slow
def test_round1_oof_round2_end_to_end(synthetic_records, tmp_path):
    """cfg_1-style fold runs -> OOF score table -> a cfg_2-style fullfit run that reads it.

    Slow (about 100 s): the two rounds are five trainings of one epoch each, the fewest that
    give every fold an out-of-fold score."""
    from asl_keras.training import oof

    runs = []
    for fold in range(4):
        cfg = tiny_config(synthetic_records, tmp_path / "r1", epochs=1)
        cfg.name, cfg.data.fold = "round1", fold
        cfg.model.backward_decoder = cfg.model.confidence_head = False
        t = trainer.Trainer(cfg, verbose=False)
        t.fit()
        runs.append(t.dir)
    table, missing = oof.merge(runs, str(synthetic_records))
    assert missing == []
    scores = tmp_path / "scores.csv"
    table.to_csv(scores, index=False)
    cfg2 = tiny_config(synthetic_records, tmp_path / "r2", epochs=1)
    cfg2.name, cfg2.data.fold, cfg2.data.scores = "round2", -1, str(scores)
    result = trainer.Trainer(cfg2, verbose=False).fit()
    assert set(result) == {"score", "score_pp", "score_damerau"}
    batch = next(iter(trainer.pipeline.train_dataset(cfg2.data, 0, 1)))
    joined = dict(zip(table.sequence_id, table.score.clip(0, 1), strict=True))
    # CutMix mixes scores, so the batch scores lie within the range of the table's
    assert batch["score"].numpy().min() >= min(joined.values()) - 1e-6
    assert batch["score"].numpy().max() <= max(joined.values()) + 1e-6
