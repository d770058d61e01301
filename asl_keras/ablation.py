"""Zipformer ablation: five encoders trained alike, scored alike.

`python -m asl_keras.bench ablation [--seeds 0 1] [--epochs N]` trains every variant of
`VARIANTS` on the same synthetic data (`configs/ablation.yaml`), for the same number of steps
and at about the same encoder parameter count, with each seed, then prints a table of the
validation score (mean over seeds), training throughput and TFLite latency, and writes it to
`bench_out/ablation.md`; with `--update-readme` also into the repository's README.md between
the ablation markers.

Variants (each adds to the one before, except that (a) is the reference):
(a) the 1st-place Squeezeformer encoder;
(b) the public fork's Zipformer element set with its schedules frozen as it ran them;
(c) (b) with working schedules and the Balancer/Whitener;
(d) (c) trained with ScaledAdam + Eden instead of AdamW + cosine;
(e) (d) with temporal downsampling: the block runs at half the frame rate inside a Bypass.
Sizes: Squeezeformer 2 blocks = 95k encoder parameters, one Zipformer block (two attention
and two conv modules) = 91k; downsampling adds 66 parameters. Small on purpose: the table
has to be measured on 2 CPU cores (10 runs of 15 epochs, about 40 minutes).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil

import numpy as np
import pandas as pd

from asl_keras import config

# The checkout this package sits in, not the working directory: its config and README belong
# to the code that runs them.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_CONFIG = os.path.join(REPO, "configs", "ablation.yaml")
README = os.path.join(REPO, "README.md")
RUNS_DIR = os.path.join("runs", "ablation")
MARK_START, MARK_END = "<!-- ablation:start -->", "<!-- ablation:end -->"

_ZIPFORMER = ["model.encoder=zipformer", "model.blocks=1", "model.ffn_dims=[48,64,80]"]
_WORKING = ["model.schedules=true", "model.constraints=true"]
_SCALED_ADAM = ["train.optimizer=scaled_adam", "train.schedule=eden",
                "train.learning_rate=0.045", "train.eden_steps=200"]
VARIANTS = {
    "a": ("1st-place Squeezeformer (2 blocks)", ["model.encoder=squeezeformer"]),
    "b": ("fork's Zipformer set, schedules frozen", [*_ZIPFORMER, "model.schedules=false"]),
    "c": ("(b) + working schedules + Balancer/Whitener", [*_ZIPFORMER, *_WORKING]),
    "d": ("(c) + ScaledAdam/Eden", [*_ZIPFORMER, *_WORKING, *_SCALED_ADAM]),
    "e": ("(d) + downsampling: the block at half frame rate",
          [*_ZIPFORMER, *_WORKING, *_SCALED_ADAM, "model.stacks=[[1,2,64]]"]),
}


def variant_config(key: str, seed: int, epochs: int | None) -> config.Config:
    overrides = [*VARIANTS[key][1], f"seed={seed}", f"name=ablation_{key}",
                 f"train.runs_dir={RUNS_DIR}"]
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    cfg = config.load(BASE_CONFIG, overrides)
    if cfg.model.encoder == "zipformer":  # go through icefall's whole schedule in this run
        from asl_keras.training.trainer import steps_per_epoch

        updates = cfg.train.epochs * steps_per_epoch(cfg, 1) // cfg.train.grad_accumulation
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model,
                                                                 schedule_scale=20000 / updates))
    return cfg


def encoder_parameters(cfg: config.Config) -> int:
    from asl_keras.models.recognizer import build_recognizer

    model = build_recognizer(cfg)
    return int(sum(np.prod(v.shape) for v in model.encoder.trainable_weights))


def tflite_latency_ms(cfg: config.Config, weights: str, frames: int = 128,
                      repeats: int = 20) -> float:
    """Median single-thread latency of a one-model fp32 export on one `frames`-frame clip."""
    from asl_keras.export import tflite

    models = tflite.load_models(cfg, [weights])
    runner = tflite.runner(tflite.convert(models, cfg.data.max_len, fp16=False), num_threads=1)
    return float(np.median(tflite.clip_latencies_ms(runner, frames, repeats)))


def run_variant(key: str, seed: int, epochs: int | None) -> dict:
    from asl_keras.training.run import prepare_records
    from asl_keras.training.trainer import Trainer, TrainingDiverged, run_dir, steps_per_epoch

    cfg = variant_config(key, seed, epochs)
    prepare_records(cfg)
    shutil.rmtree(run_dir(cfg), ignore_errors=True)  # a fresh run each time
    try:
        result = Trainer(cfg, verbose=False).fit()
    except TrainingDiverged as e:  # a row of the table, not the end of the ablation
        print(f"  diverged: {e}", flush=True)
        return {"variant": key, "seed": seed, "score": float("nan"),
                "samples_per_s": float("nan"), "weights": None, "cfg": cfg}
    history = pd.read_csv(os.path.join(run_dir(cfg), "history.csv"))
    seconds = history["seconds"].iloc[1:].mean() if len(history) > 1 else history["seconds"][0]
    samples = steps_per_epoch(cfg, 1) * cfg.data.batch_size
    return {"variant": key, "seed": seed, "score": result["score"],
            "samples_per_s": samples / seconds,
            "weights": os.path.join(run_dir(cfg), "model.weights.h5"), "cfg": cfg}


def table(runs: list[dict], latency: dict[str, float], params: dict[str, int]) -> str:
    lines = ["| variant | encoder params | validation score (mean of seeds) | per seed | "
             "train samples/s | TFLite ms/clip (128 frames, 1 thread) |",
             "|---|---|---|---|---|---|"]
    for key, (label, _) in VARIANTS.items():
        mine = [r for r in runs if r["variant"] == key]
        if not mine:
            continue
        scores = [r["score"] for r in mine]
        # a diverged seed (NaN) makes the mean NaN: it is shown, not averaged away
        lines.append(f"| ({key}) {label} | {params[key]:,} | {np.mean(scores):.3f} | "
                     + " / ".join(f"{s:.3f}" for s in scores)
                     + f" | {np.mean([r['samples_per_s'] for r in mine]):.0f} | "
                     f"{latency[key]:.1f} |")
    return "\n".join(lines)


def write_readme(text: str, readme: str = README) -> bool:
    """Replace the block between the ablation markers of the README; False if no markers."""
    if not os.path.exists(readme):
        return False
    with open(readme, encoding="utf-8") as f:
        content = f.read()
    pattern = re.compile(re.escape(MARK_START) + ".*?" + re.escape(MARK_END), re.S)
    if not pattern.search(content):
        return False
    content = pattern.sub(lambda _: f"{MARK_START}\n{text}\n{MARK_END}", content)
    with open(readme, "w", encoding="utf-8") as f:
        f.write(content)
    return True


def run(seeds=(0, 1), epochs: int | None = None, variants=tuple(VARIANTS),
        out_dir: str = "bench_out", update_readme: bool = False) -> str:
    """Train and time `variants` with each seed; returns the table, written to
    `out_dir/ablation.md` and, with `update_readme`, into the README between its markers."""
    runs, latency, params = [], {}, {}
    for key in variants:
        for seed in seeds:
            print(f"ablation ({key}) seed {seed} ...", flush=True)
            runs.append(run_variant(key, seed, epochs))
            print(f"  score {runs[-1]['score']:.4f}", flush=True)
        mine = [r for r in runs if r["variant"] == key]
        params[key] = encoder_parameters(mine[0]["cfg"])
        trained = [r for r in mine if r["weights"]]
        latency[key] = (tflite_latency_ms(trained[0]["cfg"], trained[0]["weights"]) if trained
                        else float("nan"))
    text = table(runs, latency, params)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "ablation.md"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    if update_readme:
        print("README.md ablation table updated" if write_readme(text, README)
              else f"{README} has no ablation markers: not updated")
    return text
