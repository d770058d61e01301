"""Encoder and optimizer ablation: every variant at its own best learning rate, several seeds.

`python -m asl_keras.bench ablation [--presets default hard] [--seeds 0 1 2] [--jobs 2]
[--scale cpu|gpu] [--table FILE] [--update-readme FILE]` runs, for every variant of `VARIANTS`
and every data preset of `PRESETS`:
1. on the first preset, a learning-rate search: the variant's own rate times each of
   `LR_FACTORS`, with the first seed, every run the same fixed budget (the config's epochs);
2. the other seeds at the rate that scored best in 1 (its seed-0 run is reused), and on every
   other preset all seeds at that same rate, same budget. (One search per variant, not one
   per preset: a search on the hard preset as well would add 40 % to the CPU run.)
The table (printed; in Markdown to the `--table` file, and between the ablation markers of the
`--update-readme` file when given) has, per preset and variant, the score of every searched
rate, mean ± std over seeds at the best rate, and whether each variant differs from the best
one by more than the seed spread (`separated`: their per-seed ranges do not overlap). Learning
curves (mean over seeds of the validation score per evaluated epoch) go to
`bench_out/ablation_<preset>.png`.

Why this protocol: at this size a run either gets past the alignment phase before its learning
rate decays or it does not, so comparing variants at one shared rate and a short schedule
measures the schedule; each variant at its own best rate, all with one budget, measures the
variants. The search picks the rate on the same held-out signers that are reported (there is no
third split of 16 signers), which favours every variant alike.

Variants (each adds to the one before, except that (a) is the reference):
(a) the 1st-place Squeezeformer encoder, AdamW + warmup-cosine;
(c) the Zipformer element set with working schedules and the Balancer/Whitener, AdamW + cosine;
(d) (c) trained with ScaledAdam + Eden;
(e) (d) with temporal downsampling: the block runs at half the frame rate inside a Bypass.
The public fork's frozen-schedule set (formerly (b)) is left out: it reproduces a bug and
decides nothing. At the `cpu` scale the
encoders are small on purpose (Squeezeformer 2 blocks = 95k encoder parameters, one Zipformer
block = 91k; downsampling adds 66) so that the measured set (variants a, c, d: 5 runs each on
the default data, 3 on the hard preset) fits in about an hour on 2 cores.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import re

import numpy as np
import yaml

from asl_keras import config

# The checkout this package sits in, not the working directory: its configs belong to the
# code that runs them.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_CONFIG = os.path.join(REPO, "configs", "ablation.yaml")
RUNS_DIR = os.path.join("runs", "ablation")
RESULT = "ablation_result.json"  # in a run's folder once it has finished
MARK_START, MARK_END = "<!-- ablation:start -->", "<!-- ablation:end -->"

_ZIPFORMER = ["model.encoder=zipformer", "model.blocks=1", "model.ffn_dims=[48,64,80]",
              "model.schedules=true", "model.constraints=true"]
_SCALED_ADAM = ["train.optimizer=scaled_adam", "train.schedule=eden",
                "train.learning_rate=0.045", "train.eden_steps=200"]
VARIANTS = {
    "a": ("1st-place Squeezeformer, AdamW", ["model.encoder=squeezeformer"]),
    "c": ("Zipformer set (schedules, Balancer/Whitener), AdamW", _ZIPFORMER),
    "d": ("(c) + ScaledAdam/Eden", [*_ZIPFORMER, *_SCALED_ADAM]),
    "e": ("(d) + downsampling: the block at half frame rate",
          [*_ZIPFORMER, *_SCALED_ADAM, "model.stacks=[[1,2,64]]"]),
}
# The data of each preset: the demo's own (ablation.yaml starts from demo.yaml), or the `data`
# keys of the demo config on the generator's preset of that name.
PRESETS = {"default": None, "hard": "demo_hard.yaml"}
LR_FACTORS = (0.5, 1.0, 2.0)  # times the variant's own learning rate


@dataclasses.dataclass(frozen=True)
class Scale:
    """How big every run of the ablation is.

    `overrides` apply to every variant (data size, epochs); `squeezeformer` and `zipformer`
    to the variants of that encoder, sized so that both have about the same parameter count;
    `downsampled` replaces the stacks of the downsampling variant (e) at that width.
    """

    overrides: tuple[str, ...]
    squeezeformer: tuple[str, ...] = ()
    zipformer: tuple[str, ...] = ()
    downsampled: tuple[str, ...] = ()


SCALES = {
    # 2 CPU cores, two runs at a time on one core each (measured: README, section 6).
    "cpu": Scale(overrides=()),
    # One GPU: 4x the data (16 signers -> 32), 2x the width and depth, 2x the epochs: about
    # 64x the arithmetic of a CPU run (8x per clip, 8x the clips). Not measured (no GPU on the
    # development machine): a CPU run takes ~5 core-minutes, a GPU is taken as 50-100x one
    # core for models of this width, i.e. 3-6 minutes a run: 1.5-2.5 h for 24 runs.
    "gpu": Scale(
        overrides=("data.synthetic.train=6000", "data.synthetic.supplemental=1200",
                   "data.synthetic.participants=32", "data.synthetic.per_file=500",
                   "train.epochs=30", "train.eval_every=5", "model.dim=128", "model.heads=4",
                   "model.decoder_ffn=256", "data.batch_size=32"),
        squeezeformer=("model.blocks=4",),
        zipformer=("model.blocks=2", "model.ffn_dims=[96,128,160]"),
        downsampled=("model.stacks=[[2,2,128]]",)),
}


def preset_overrides(preset: str) -> list[str]:
    """The `data` keys of the preset's demo config file, as overrides (its own keys only)."""
    if PRESETS[preset] is None:
        return []
    with open(os.path.join(REPO, "configs", PRESETS[preset]), encoding="utf-8") as f:
        data = yaml.safe_load(f).get("data", {})

    def flat(tree: dict, prefix: str) -> list[str]:
        return [item for key, value in tree.items()
                for item in (flat(value, f"{prefix}{key}.") if isinstance(value, dict)
                             else [f"{prefix}{key}={value}"])]

    return flat(data, "data.")


def _scaled_data(overrides: list[str], scale: str, preset: str) -> list[str]:
    """A scale other than cpu gets data folders of its own, so sets of two sizes never mix."""
    if scale == "cpu":
        return overrides
    kaggle, records = (f"data/ablation_{scale}_{preset}_kaggle",
                       f"tfrecords/ablation_{scale}_{preset}")
    return [*overrides, f"data.kaggle_dir={kaggle}", f"data.records={records}"]


def variant_config(key: str, seed: int, preset: str = "default", lr_factor: float = 1.0,
                   scale: str = "cpu") -> config.Config:
    """The config of one run: variant `key` on `preset` data, its rate times `lr_factor`."""
    s = SCALES[scale]
    overrides = list(s.overrides)
    own = VARIANTS[key][1]
    overrides += s.zipformer if "model.encoder=zipformer" in own else s.squeezeformer
    if any(o.startswith("model.stacks=") for o in own):
        overrides += s.downsampled
    overrides = _scaled_data([*preset_overrides(preset), *overrides], scale, preset)
    name = f"ablation_{scale}_{preset}_{key}_lr{lr_factor:g}"
    cfg = config.load(BASE_CONFIG, [*own, *overrides, f"seed={seed}",
                                    f"name={name}", f"train.runs_dir={RUNS_DIR}"])
    train = dataclasses.replace(cfg.train, learning_rate=cfg.train.learning_rate * lr_factor)
    return dataclasses.replace(cfg, train=train)


def with_whole_schedule(cfg: config.Config) -> config.Config:
    """A Zipformer goes through icefall's whole module schedule (20k updates) in its run; needs
    the records (their size sets the number of updates)."""
    if cfg.model.encoder != "zipformer":
        return cfg
    from asl_keras.training.trainer import steps_per_epoch

    updates = cfg.train.epochs * steps_per_epoch(cfg, 1) // cfg.train.grad_accumulation
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model,
                                                              schedule_scale=20000 / updates))


def encoder_parameters(cfg: config.Config) -> int:
    from asl_keras.models.recognizer import build_recognizer

    model = build_recognizer(cfg)
    return int(sum(np.prod(v.shape) for v in model.encoder.trainable_weights))


def tflite_latency_ms(cfg: config.Config, weights: str, frames: int = 128,
                      repeats: int = 20) -> float:
    """Median single-thread latency of a one-model fp32 export on one `frames`-frame clip."""
    from asl_keras.export import tflite

    models = tflite.load_models(cfg, [weights])
    runner = tflite.runner(tflite.convert(models, cfg.data.max_len, weights="fp32"), num_threads=1)
    return float(np.median(tflite.clip_latencies_ms(runner, frames, repeats)))


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run of the ablation."""

    variant: str
    preset: str
    seed: int
    lr_factor: float
    scale: str = "cpu"

    def config(self) -> config.Config:
        return variant_config(self.variant, self.seed, self.preset, self.lr_factor, self.scale)


def run_variant(spec: RunSpec, cfg: config.Config) -> dict:
    """Train `cfg` (that of `spec`) from scratch; its final validation score, curve and
    throughput."""
    from asl_keras.runtime import tf
    from asl_keras.training import trainer

    cfg = with_whole_schedule(cfg)
    folder = trainer.run_dir(cfg)
    done = os.path.join(folder, RESULT)
    settings = json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=list)
    if tf.io.gfile.exists(done):  # finished before with these settings: an interrupted
        with tf.io.gfile.GFile(done) as f:  # ablation, run again, goes on where it stopped
            stored = json.load(f)
        if stored["config"] == settings:
            return {**stored["row"], "spec": spec,
                    "curve": [tuple(p) for p in stored["row"]["curve"]]}
    if tf.io.gfile.exists(folder):
        tf.io.gfile.rmtree(folder)  # anything else there is a stale or unfinished run
    row = {"spec": spec, "learning_rate": cfg.train.learning_rate, "score": float("nan"),
           "samples_per_s": float("nan"), "curve": [], "weights": None}
    try:
        result = trainer.Trainer(cfg, verbose=False).fit()
    except trainer.TrainingDiverged as e:  # a row of the table, not the end of the ablation
        print(f"  {spec}: diverged: {e}", flush=True)
        return _finished(row, done, settings)
    history = trainer.read_history(folder)
    seconds = history["seconds"].iloc[1:].mean() if len(history) > 1 else history["seconds"][0]
    evaluated = history.dropna(subset=["score"])
    row.update(score=result["score"],
               samples_per_s=trainer.steps_per_epoch(cfg, 1) * cfg.data.batch_size / seconds,
               curve=list(zip(evaluated["epoch"].tolist(), evaluated["score"].tolist(),
                              strict=True)),
               weights=os.path.join(folder, "model.weights.h5"))
    return _finished(row, done, settings)


def _finished(row: dict, path: str, settings: str) -> dict:
    """Store a finished run's row beside its checkpoints (the spec is the caller's)."""
    from asl_keras.runtime import tf

    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"config": settings, "row": {k: v for k, v in row.items() if k != "spec"}}, f)
    return row


def _one_thread() -> None:
    """Pool initializer: each parallel run gets one core, so `jobs` runs share the machine."""
    from asl_keras.runtime import tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def run_all(specs: list[RunSpec], jobs: int) -> list[dict]:
    """Run `specs`, `jobs` at a time (each in a fresh process with one thread when jobs > 1)."""
    def report(row):
        s = row["spec"]
        print(f"ablation {s.preset} ({s.variant}) lr x{s.lr_factor:g} seed {s.seed}: "
              f"score {row['score']:.4f}", flush=True)
        return row

    if jobs <= 1:
        return [report(run_variant(s, s.config())) for s in specs]
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive a fork
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context,
                                                initializer=_one_thread) as pool:
        # configs are made here: a worker process imports this module afresh
        futures = [pool.submit(run_variant, s, s.config()) for s in specs]
        return [report(f.result()) for f in futures]


def best_factor(rows: list[dict]) -> float:
    """The searched factor with the highest score (a diverged run counts as the worst)."""
    return max(rows, key=lambda r: -np.inf if np.isnan(r["score"]) else r["score"]
               )["spec"].lr_factor


def separated(a: list[float], b: list[float]) -> bool:
    """True when every seed of one variant scored above every seed of the other."""
    return min(a) > max(b) or min(b) > max(a)


def summarize(rows: list[dict], preset: str) -> list[dict]:
    """Per variant of `preset`: searched scores, best factor, seed scores at it."""
    out = []
    for key in VARIANTS:
        mine = [r for r in rows if r["spec"].preset == preset and r["spec"].variant == key]
        if not mine:
            continue
        first = min(r["spec"].seed for r in mine)
        search = sorted((r for r in mine if r["spec"].seed == first),
                        key=lambda r: r["spec"].lr_factor)
        factor = best_factor(search)
        seeds = sorted((r for r in mine if r["spec"].lr_factor == factor),
                       key=lambda r: r["spec"].seed)
        out.append({"variant": key, "search": search, "factor": factor, "seeds": seeds,
                    "scores": [r["score"] for r in seeds]})
    return out


def table(rows: list[dict], preset: str, latency: dict[str, float],
          params: dict[str, int]) -> str:
    """Markdown table of one preset (rows of `run_variant`)."""
    summary = summarize(rows, preset)
    means = {s["variant"]: np.mean(s["scores"]) for s in summary}
    best = max(means, key=lambda k: -np.inf if np.isnan(means[k]) else means[k])
    best_scores = next(s["scores"] for s in summary if s["variant"] == best)
    lines = [f"**{preset} data** (validation score at the last epoch; best variant: ({best}))",
             "",
             "| variant | encoder params | lr search (seed 0): rate -> score | best rate | "
             "score, mean ± std | per seed | vs best | separated | train samples/s | "
             "TFLite ms/clip |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        key, scores = s["variant"], s["scores"]
        search = (", ".join(f"{r['learning_rate']:.3g} -> {r['score']:.3f}" for r in s["search"])
                  if len(s["search"]) > 1 else "the rate of the first preset's search")
        rate = next(r["learning_rate"] for r in s["search"] if r["spec"].lr_factor == s["factor"])
        # a diverged seed (NaN) makes the mean NaN: it is shown, not averaged away
        diff = "-" if key == best else f"{means[key] - means[best]:+.3f}"
        sep = "-" if key == best else ("yes" if separated(scores, best_scores) else "no")
        speed = np.mean([r["samples_per_s"] for r in s["seeds"]])
        lines.append(f"| ({key}) {VARIANTS[key][0]} | {params[key]:,} | {search} | {rate:.3g} | "
                     f"{np.mean(scores):.3f} ± {np.std(scores):.3f} (n={len(scores)}) | "
                     + " / ".join(f"{v:.3f}" for v in scores)
                     + f" | {diff} | {sep} | {speed:.0f} | {latency.get(key, np.nan):.1f} |")
    return "\n".join(lines)


def plot_curves(rows: list[dict], preset: str, path: str) -> None:
    """Mean over seeds (best rate) of the validation score per evaluated epoch, per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from asl_keras.training.trainer import save_png

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for s in summarize(rows, preset):
        curves = [dict(r["curve"]) for r in s["seeds"] if r["curve"]]
        epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        if epochs:
            ax.plot(epochs, [np.mean([c[e] for c in curves]) for e in epochs], marker="o",
                    label=f"({s['variant']}) lr {s['seeds'][0]['learning_rate']:.3g}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation score (mean of seeds)")
    ax.set_title(f"ablation, {preset} data")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)


def write_readme(text: str, readme: str) -> bool:
    """Replace the block between the ablation markers of the file `readme` (a README);
    False if it does not exist or has no markers."""
    from asl_keras.runtime import tf

    if not tf.io.gfile.exists(readme):
        return False
    with tf.io.gfile.GFile(readme) as f:
        content = f.read()
    pattern = re.compile(re.escape(MARK_START) + ".*?" + re.escape(MARK_END), re.S)
    if not pattern.search(content):
        return False
    content = pattern.sub(lambda _: f"{MARK_START}\n{text}\n{MARK_END}", content)
    with tf.io.gfile.GFile(readme, "w") as f:
        f.write(content)
    return True


def run(seeds=(0, 1, 2), variants=tuple(VARIANTS), presets=tuple(PRESETS),
        lr_factors=LR_FACTORS, scale: str = "cpu", jobs: int = 1, out_dir: str = "bench_out",
        table_path: str | None = None, readme: str | None = None) -> str:
    """The whole ablation (module docstring); returns the tables (Markdown), also written to
    the file `table_path` and between the ablation markers of the file `readme` when given.
    The learning curves go to `out_dir`."""
    from asl_keras.training.run import prepare_records

    for preset in presets:  # once, before any parallel run could race to generate the data
        prepare_records(variant_config(variants[0], seeds[0], preset, scale=scale))
    first, others = presets[0], presets[1:]
    search = run_all([RunSpec(k, first, seeds[0], f, scale) for k in variants
                      for f in lr_factors], jobs)
    chosen = {k: best_factor([r for r in search if r["spec"].variant == k]) for k in variants}
    rows = search + run_all([RunSpec(k, first, s, chosen[k], scale) for k in variants
                             for s in seeds[1:]]
                            + [RunSpec(k, p, s, chosen[k], scale) for p in others
                               for k in variants for s in seeds], jobs)
    from asl_keras.runtime import tf

    tf.io.gfile.makedirs(out_dir)
    tables = []
    for preset in presets:
        params, latency = {}, {}
        for s in summarize(rows, preset):
            first = s["seeds"][0]
            cfg = first["spec"].config()
            params[s["variant"]] = encoder_parameters(cfg)
            if first["weights"]:
                latency[s["variant"]] = tflite_latency_ms(cfg, first["weights"])
        tables.append(table(rows, preset, latency, params))
        plot_curves(rows, preset, os.path.join(out_dir, f"ablation_{preset}.png"))
    text = "\n\n".join(tables)
    if table_path:
        with tf.io.gfile.GFile(table_path, "w") as f:
            f.write(text + "\n")
    if readme:
        print(f"{readme}: ablation table updated" if write_readme(text, readme)
              else f"{readme} does not exist or has no ablation markers: not updated")
    return text
