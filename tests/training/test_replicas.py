"""The Trainer on two replicas (MirroredStrategy over 2 logical CPUs) with gradient accumulation:
the same run as one device, in fp32 and fp16, and the full-size configs at cfg_2's 8 micro-batches
per update."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from asl_keras import config, vocab
from asl_keras.data import pipeline
from asl_keras.training import clipping, optimizers, trainer
from tests.paths import config_path
from tests.training.test_clipping import assert_in_sync, assert_same, copies, mirrored


def load(name: str, records, runs, *overrides: str) -> config.Config:
    return config.load(config_path(f"{name}.yaml"), [f"data.records={records}", "data.scores=null",
                                                "data.max_len=32", f"train.runs_dir={runs}",
                                                *overrides])


def train(t: trainer.Trainer, batches: list[dict]) -> list[float]:
    """One call of the trainer's training function over `batches` (global batches)."""
    data = tf.data.Dataset.from_tensors(batches[0])
    for b in batches[1:]:
        data = data.concatenate(tf.data.Dataset.from_tensors(b))
    return t.train_steps(iter(t.strategy.experimental_distribute_dataset(data)),
                         len(batches)).numpy().tolist()


def mean_difference(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """The mean absolute difference over every element of two lists of arrays."""
    pairs = zip(a, b, strict=True)
    return float(np.mean(np.concatenate([np.abs(x - y).ravel() for x, y in pairs])))


# Weights: the mean difference between the two runs, relative to the mean change. fp16 rounds
# differently on 4 and 8 sequences, and Adam's first steps are about +-lr per element whatever
# the gradient's size, so an element whose gradient is near zero may move by up to lr.
@pytest.mark.parametrize("precision,scale,loss_tolerance,weight_tolerance", [
    ("float32", None, 1e-5, 1e-4), ("mixed_float16", 2.0 ** 10, 2e-3, 1e-2)])
def test_an_accumulating_trainer_on_two_replicas_equals_one_device(synthetic_records, tmp_path,
                                                                   float32_afterwards,
                                                                   without_graph_optimizations,
                                                                   monkeypatch, precision,
                                                                   scale, loss_tolerance,
                                                                   weight_tolerance):
    """4 micro-batches, 2 updates: the losses and final weights (BatchNorm statistics included)
    of one device with 8 sequences per micro-batch and of 2 replicas with 4 each.

    Each global batch is a batch of 4 twice over, so that every replica's BatchNorm sees the
    statistics of the whole global batch (BatchNorm normalises per replica, as in the
    reference). No dropout (the decoder's rates are the reference's constants, so its layers
    are switched off) or decoder-input masking: their draws depend on the split. AdamW with
    active clipping; fp16 with its loss scaling."""
    monkeypatch.setattr(keras.layers.Dropout, "call", lambda self, inputs, training=False: inputs)

    def tiny(runs, batch_size: int) -> config.Config:
        return load("cfg_2_squeezeformer", synthetic_records, runs, "data.buffer_len=64",
                    f"data.batch_size={batch_size}", "data.augment.decoder_mask=0",
                    "model.dim=16", "model.blocks=1", "model.decoder_ffn=32",
                    "model.kernel_size=5", "model.dropout=0", "train.grad_accumulation=2",
                    "train.warmup_epochs=0", "train.learning_rate=0.01", "train.clip_norm=0.05",
                    f"train.precision={precision}")

    fields = ("landmarks", "mask", "labels", "score")
    halves = pipeline.eval_dataset(tiny(tmp_path, 4).data, batch_size=4).take(4)
    batches = [{k: tf.concat([b[k], b[k]], 0) for k in fields} for b in halves]
    one = trainer.Trainer(tiny(tmp_path / "one", 8), strategy=tf.distribute.get_strategy(),
                          verbose=False)
    two = trainer.Trainer(tiny(tmp_path / "two", 4), strategy=mirrored(), verbose=False)
    assert one.steps == two.steps  # the same schedule
    start = one.model.get_weights()
    two.model.set_weights(start)
    if scale:  # Keras' initial loss scale, 2^15, overflows float16 here: steps would be skipped
        for t in (one, two):
            assert isinstance(t.optimizer, clipping.LossScaleOptimizer)
            t.optimizer.dynamic_scale.assign(scale)
    losses_one, losses_two = train(one, batches), train(two, batches)
    assert int(two.optimizer.iterations.numpy()) == 2
    assert_same(losses_one, losses_two, rtol=loss_tolerance, atol=loss_tolerance)
    change = mean_difference(start, two.model.get_weights())
    assert change > 1e-3
    assert mean_difference(one.model.get_weights(), two.model.get_weights()) < (
        weight_tolerance * change)
    # what the optimizer updates; BatchNorm's moving statistics are each replica's own, as in
    # Keras and the reference (a checkpoint keeps replica 0's)
    assert_in_sync(two.strategy, two.model.trainable_variables + two.optimizer.variables)


def random_batches(n: int, size: int, frames: int = 32) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"landmarks": rng.normal(size=(size, frames, 130, 3)).astype("float32"),
             "mask": np.ones((size, frames), "float32"),
             "labels": rng.integers(0, vocab.NUM_CHARS, (size, vocab.LABEL_LEN)).astype("int32"),
             "score": np.ones(size, "float32")} for _ in range(n)]


@pytest.mark.parametrize("name", ["cfg_2", "cfg_2_squeezeformer"])
def test_a_full_config_accumulates_8_micro_batches_on_two_replicas(
        synthetic_records, tmp_path, without_graph_optimizations, name):
    """cfg_2's 8 micro-batches per update with every flag of the config (its optimizer,
    schedule, heads and encoder) at a narrow width: none of it depends on the size. 2 updates
    on random sequences of 32 frames (1 per replica), in one call of the training function:
    finite losses, 2 optimizer updates seen by the model's schedules and the learning rate,
    and a checkpoint that restores into a one-device run."""
    cfg = load(name, synthetic_records, tmp_path, "data.batch_size=1", "model.dim=16",
               "model.blocks=2", "model.ffn_dims=[16, 24, 32]", "model.decoder_ffn=32",
               "model.kernel_size=5")
    assert cfg.train.grad_accumulation == 8
    two = trainer.Trainer(cfg, strategy=mirrored(), verbose=False)
    # the `step` the model's schedules receive at each micro-batch, oldest first
    with two.strategy.scope():
        seen = keras.Variable(np.full(16, -1), dtype="int64", trainable=False)
    encode = two.model.encode

    def recording_encode(landmarks, mask, training=False, step=None):
        seen.assign(tf.concat([seen.value[1:], [tf.cast(step, tf.int64)]], 0))
        return encode(landmarks, mask, training=training, step=step)

    two.model.encode = recording_encode
    losses = train(two, random_batches(16, 2))
    assert np.isfinite(losses).all(), losses
    assert int(two.optimizer.iterations.numpy()) == 2
    for replica in copies(two.strategy, seen):
        assert replica.tolist() == [0] * 8 + [1] * 8
    expected_lr = float(optimizers.make_schedule(cfg.train, two.steps)(2))
    assert two.learning_rate() == pytest.approx(expected_lr, rel=1e-6)
    assert_in_sync(two.strategy, two.model.trainable_variables + two.optimizer.variables)

    two.manager.save()
    one = trainer.Trainer(cfg, strategy=tf.distribute.get_strategy(), verbose=False)
    assert one.steps != two.steps  # a mid-epoch position would not carry over, so force
    assert one.restore(force=True) == (0, 0)
    assert int(one.optimizer.iterations.numpy()) == 2
    assert_same(two.model.get_weights(), one.model.get_weights(), rtol=0, atol=0)
    assert_same([v.numpy() for v in two.optimizer.variables],
                [v.numpy() for v in one.optimizer.variables], rtol=0, atol=0)


def test_validation_decodes_on_two_replicas_as_on_one_device(synthetic_records, tmp_path):
    """`trainer.predict` runs the decoding on the replicas, each on its own batch (the fold's
    last batch padded with invalid rows): the same rows, in the same order, as one device."""
    cfg = load("demo", synthetic_records, tmp_path, "model.dim=16", "model.blocks=1",
               "model.decoder_ffn=32", "model.kernel_size=5")
    one = trainer.Trainer(cfg, strategy=tf.distribute.get_strategy(), verbose=False)
    two = trainer.Trainer(cfg, strategy=mirrored(), verbose=False)
    two.model.set_weights(one.model.get_weights())
    # 6 clips a replica per step: the held-out fold is not a whole number of steps
    rows = [trainer.predict(t.strategy, t.decode, cfg, 12) for t in (one, two)]
    held_out = pipeline.read_index(str(synthetic_records))
    expected = held_out[(held_out["fold"] == 0) & (held_out["is_supplemental"] == 0)]
    assert len(expected) % 12 and len(rows[0]) == len(expected)
    assert {r["sequence_id"] for r in rows[0]} == set(expected["sequence_id"])
    assert rows[0] == rows[1]
