"""The TPU stand-in: every shipped config's training step, training loop and validation
decoding compile with XLA (`jit_compile=True` on the CPU), as a TPU compiles everything it runs.

Each config is narrowed (small width, one block, short clips) with every other flag kept:
encoder kind, Zipformer constraints and schedules, optimizer and schedule, CTC, confidence and
backward heads, decoder-input masking. A config added to `configs/` is covered here without
editing this file. docs/accelerators.md says what this proves and what only a TPU can show.
"""

from __future__ import annotations

import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from asl_keras import config
from asl_keras.training import trainer
from tests.paths import CONFIGS


def step_groups() -> dict[str, str]:
    """One shipped config per distinct training step once narrowed ({"a.yaml, b.yaml": "a.yaml"}):
    configs that differ only in data, epochs or evaluation (demo, demo_hard, ablation) compile
    the same step, so it is compiled once for all of them."""
    groups: dict[str, list[str]] = {}
    for path in sorted(glob.glob(os.path.join(CONFIGS, "*.yaml"))):
        cfg = narrow(os.path.basename(path), "records", "runs")
        step = (cfg.model, cfg.data.augment.decoder_mask, cfg.train.optimizer,
                cfg.train.schedule, cfg.train.grad_accumulation > 1)
        groups.setdefault(repr(step), []).append(os.path.basename(path))
    return {", ".join(names): names[0] for names in groups.values()}


# What a TPU takes as input: no float64 and no strings; int64 only where TF keeps it on the host.
TPU_DTYPES = {tf.float32, tf.bfloat16, tf.int32, tf.int64, tf.bool}


def narrow(name: str, records, runs, *overrides: str) -> config.Config:
    """The shipped config `name` at a narrow width, every flag kept, XLA on."""
    cfg = config.load(os.path.join(CONFIGS, name))
    widths = [f"model.stacks={[[1, factor, 16] for _, factor, _ in cfg.model.stacks]}"]
    return config.load(os.path.join(CONFIGS, name), [
        f"data.records={records}", "data.scores=null", "data.max_len=32", "data.buffer_len=64",
        "data.batch_size=4", "data.shuffle_buffer=16", "model.dim=16", "model.blocks=1",
        "model.decoder_layers=1",
        "model.ffn_dims=[16, 24, 32]", "model.decoder_ffn=32", "model.kernel_size=5",
        *widths, f"train.runs_dir={runs}", "train.jit_compile=true", "train.eval_batch_size=8",
        *overrides])


STEPS = step_groups()


def two_micro_batches(t: trainer.Trainer) -> np.ndarray:
    """The trainer's own loop over two micro-batches of its own training stream."""
    data = t.strategy.distribute_datasets_from_function(
        lambda ctx: t.input_dataset(ctx, 0, 0))
    return t.train_steps(iter(data), 2).numpy()


VARIANTS = {
    # what a TPU runs: accumulation's conditional update in bf16
    "accumulation and bf16": ["train.grad_accumulation=2", "train.precision=mixed_bfloat16"],
    # a GPU with XLA: fp16 with its loss scaling, an update per micro-batch
    "fp16 with loss scaling": ["train.grad_accumulation=1", "train.precision=mixed_float16"],
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("configs", list(STEPS))
def test_the_training_step_compiles_with_xla(configs, variant, synthetic_records, tmp_path,
                                             float32_afterwards, without_graph_optimizations):
    """Two micro-batches through the trainer's loop with its XLA-compiled step: finite losses,
    and every tensor the step receives has a static shape and a dtype a TPU takes.

    Slow (30-90 s each): XLA compiles the whole training step, forward, backward and update,
    and that compile is what is tested; the narrow width already makes it as small as it gets.
    """
    name = STEPS[configs]
    t = trainer.Trainer(narrow(name, synthetic_records, tmp_path, *VARIANTS[variant]),
                        verbose=False)
    assert t.xla
    for path, tensor in keras.tree.flatten_with_path(t.input_dataset(None, 0, 0).element_spec):
        assert tensor.shape.is_fully_defined(), f"{name}: {path} has shape {tensor.shape}"
        assert tensor.dtype in TPU_DTYPES, f"{name}: {path} is {tensor.dtype.name}"
    losses = two_micro_batches(t)
    assert losses.shape == (2,) and np.isfinite(losses).all(), losses


@pytest.mark.parametrize("configs", list(STEPS))
def test_validation_decoding_compiles_with_xla(configs, synthetic_records, tmp_path):
    """The evaluation's decoding compiled with XLA predicts what the uncompiled one does."""
    t = trainer.Trainer(narrow(STEPS[configs], synthetic_records, tmp_path), verbose=False)
    compiled = trainer.predict(t.strategy, t.decode, t.cfg, 8)
    plain = trainer.predict(t.strategy, trainer.decoding_function(t.model, t.strategy), t.cfg,
                            8)
    assert compiled and [r["prediction"] for r in compiled] == [r["prediction"] for r in plain]


def test_xla_steps_on_several_replicas_outside_a_tpu_are_refused(synthetic_records, tmp_path):
    with pytest.raises(config.ConfigError, match="train.jit_compile: .* one replica outside a "
                                                 "TPU .2 here."):
        trainer.Trainer(narrow("demo.yaml", synthetic_records, tmp_path,
                               "train.strategy=mirrored"), verbose=False)
