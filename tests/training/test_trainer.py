"""The training loop on tiny models: resume equals uninterrupted, divergence stops cleanly."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import tensorflow as tf

from asl_keras import config
from asl_keras.training import optimizers, strategy, trainer


def tiny_config(records, tmp_path, **train) -> config.Config:
    overrides = [f"data.records={records}", "data.max_len=32", "data.buffer_len=64",
                 "data.batch_size=8", "data.shuffle_buffer=32", "model.dim=16",
                 "model.blocks=1", "model.decoder_ffn=32", "model.kernel_size=5",
                 "model.backward_decoder=true", f"train.runs_dir={tmp_path}",
                 "train.grad_accumulation=2", "train.eval_batch_size=16", "train.epochs=2",
                 "train.eval_every=2", "train.warmup_epochs=0.5", "data.scores=null"]
    overrides += [f"train.{k}={v}" for k, v in train.items()]
    return config.load("configs/cfg_2_squeezeformer.yaml", overrides)


def weights(t: trainer.Trainer) -> list[np.ndarray]:
    return [v.numpy() for v in t.model.weights]


@pytest.mark.slow
def test_two_epochs_in_one_run_equal_one_plus_resume(synthetic_records, tmp_path):
    a = trainer.Trainer(tiny_config(synthetic_records, tmp_path / "a"), verbose=False)
    a.fit()
    b_cfg = tiny_config(synthetic_records, tmp_path / "b")
    b = trainer.Trainer(b_cfg, verbose=False)
    b.cfg = tiny_config(synthetic_records, tmp_path / "b", epochs=1)
    b.fit()  # stops after epoch 1 with the 2-epoch schedule and optimizer
    b2 = trainer.Trainer(b_cfg, verbose=False)
    b2.fit(resume=True)
    for x, y in zip(weights(a), weights(b2), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-6)
    hist = list(csv.DictReader(open(os.path.join(b2.dir, "history.csv"))))
    assert [r["epoch"] for r in hist] == ["1", "2"] and hist[1]["score"] != ""
    for name in ("model.weights.h5", "loss.png", "lr.png", "predictions_epoch2.csv"):
        assert os.path.exists(os.path.join(b2.dir, name)), name


def test_starting_over_an_existing_run_is_refused(synthetic_records, tmp_path):
    cfg = tiny_config(synthetic_records, tmp_path, epochs=1)
    trainer.Trainer(cfg, verbose=False).fit()
    with pytest.raises(FileExistsError, match="pass --resume"):
        trainer.Trainer(cfg, verbose=False).fit()


def test_non_finite_loss_stops_with_a_clear_message(synthetic_records, tmp_path):
    cfg = tiny_config(synthetic_records, tmp_path, epochs=1)
    t = trainer.Trainer(cfg, verbose=False)
    t.model.decoder.lm_head.kernel.assign(np.full(t.model.decoder.lm_head.kernel.shape, np.nan,
                                                  np.float32))
    with pytest.raises(trainer.TrainingDiverged, match=r"loss became nan at epoch 1, step 1"):
        t.fit()
    assert t.manager.latest_checkpoint is None  # nothing bad was saved


def test_warmup_cosine_schedule():
    s = optimizers.WarmupCosine(1.0, warmup=10, total=110)
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0) and float(s(60)) == pytest.approx(0.5)
    assert float(s(110)) == pytest.approx(0.0, abs=1e-7)


def test_default_strategy_and_precision_on_this_cpu():
    s = strategy.pick_strategy("default")
    assert s.num_replicas_in_sync == 1 and strategy.precision_policy(s) == "float32"
    with pytest.raises(strategy.StrategyError, match="no TPU"):
        strategy.pick_strategy("tpu")


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


def test_resuming_with_another_architecture_is_refused(synthetic_records, tmp_path):
    trainer.Trainer(tiny_config(synthetic_records, tmp_path, epochs=1), verbose=False).fit()
    other = tiny_config(synthetic_records, tmp_path, epochs=1)
    other.model.dim = 24
    with pytest.raises(trainer.CheckpointMismatch, match="model.dim was 16, now 24"):
        trainer.Trainer(other, verbose=False).fit(resume=True)


def test_missing_data_is_named(tmp_path):
    from argparse import Namespace

    from asl_keras.training import run

    args = Namespace(config="configs/cfg_1.yaml", fold=None, seed=None, strategy=None,
                     resume=False, overrides=[f"data.records={tmp_path}/none",
                                              f"data.kaggle_dir={tmp_path}/kaggle"])
    assert run.main_train(args) == 2
    with pytest.raises(FileNotFoundError, match=r"kaggle/train.csv not found"):
        run.prepare_records(run.resolve_config(args))


@pytest.mark.slow
def test_round1_oof_round2_end_to_end(synthetic_records, tmp_path):
    """cfg_1-style fold runs -> OOF score table -> a cfg_2-style fullfit run that reads it."""
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
