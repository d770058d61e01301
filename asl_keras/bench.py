"""Benchmarks; each prints one table. Numbers in the README come from these commands.

    python -m asl_keras.bench convert  [--sequences 3000 --per-file 1000]
    python -m asl_keras.bench pipeline --config configs/cfg_2.yaml [--batches 30]
    python -m asl_keras.bench model [--configs configs/cfg_1.yaml ...]
    python -m asl_keras.bench train --config configs/cfg_2.yaml [--batch 16 --frames 384]
                                    [--jit-compile off on] [--steps-per-execution 1 16]
    python -m asl_keras.bench tflite --config configs/cfg_2.yaml [--checkpoints A B]
    python -m asl_keras.bench ablation [--seeds 0 1] [--epochs N] [--variants a b c d e]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import subprocess
import sys
import time

import psutil

BENCH_DIR = "bench_out"


def run_measured(cmd: list[str]) -> tuple[float, float]:
    """Run a command; return (seconds, peak total RSS in MB of it and all its children)."""
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()) / 1e6)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.1)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
    return time.perf_counter() - t0, peak


def _table(rows: list[dict]) -> str:
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    line = lambda vals: "| " + " | ".join(str(v).rjust(w) for v, w in zip(vals, widths,  # noqa: E731
                                                                          strict=True)) + " |"
    return "\n".join([line(cols), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line([r[c] for c in cols]) for r in rows])


def synthetic_set(sequences: int, per_file: int, supplemental: int = 0, seed: int = 0) -> str:
    """A cached synthetic Kaggle folder under bench_out/ (generated once)."""
    from asl_keras.data import synthetic

    out = os.path.join(BENCH_DIR, f"kaggle_{sequences}_{per_file}_{supplemental}_{seed}")
    if not os.path.exists(os.path.join(out, "train.csv")):
        synthetic.generate(out, sequences, supplemental, sequences_per_file=per_file,
                           n_participants=24, seed=seed)
    return out


def bench_convert(args) -> list[dict]:
    """Convert a synthetic set shaped like the real files, in a fresh process per setting."""
    data = synthetic_set(args.sequences, args.per_file)
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(data) for f in fs
               if f.endswith(".parquet"))
    rows = []
    for workers in args.workers:
        out = os.path.join(BENCH_DIR, f"records_convert_w{workers}")
        shutil.rmtree(out, ignore_errors=True)
        dt, peak = run_measured([sys.executable, "-m", "asl_keras.data.convert", "--data-dir",
                                 data, "--out", out, "--workers", str(workers), "--quiet"])
        rows.append({"workers": workers, "sequences": args.sequences,
                     "parquet files": args.sequences // args.per_file,
                     "parquet MB": f"{size / 1e6:.0f}", "seconds (incl. start-up)": f"{dt:.1f}",
                     "sequences/s": f"{args.sequences / dt:.0f}",
                     "MB/s": f"{size / 1e6 / dt:.1f}",
                     "peak RSS MB (all processes)": f"{peak:.0f}"})
    return rows


def bench_pipeline(args) -> list[dict]:
    from asl_keras import config
    from asl_keras.data import convert, pipeline
    from asl_keras.runtime import tf

    cfg = config.load(args.config)
    data = synthetic_set(args.sequences, args.per_file, supplemental=args.sequences // 4)
    records = os.path.join(BENCH_DIR, "records_pipeline")
    convert.convert(data, records, workers=1, progress=False)
    rows = []
    for augmented in (True, False):
        aug = cfg.data.augment if augmented else config.Augment()
        d = dataclasses.replace(cfg.data, records=records, scores=None, augment=aug, fold=0)
        for cores in (1, 2):
            opts = tf.data.Options()
            opts.threading.private_threadpool_size = cores
            opts.threading.max_intra_op_parallelism = 1
            ds = pipeline.train_dataset(d, seed=0, epochs=100).with_options(opts)
            it = iter(ds)
            next(it)  # tracing and the first shuffle buffer fill
            t0 = time.perf_counter()
            for _ in range(args.batches):
                next(it)
            dt = time.perf_counter() - t0
            rows.append({"augmentations": "cfg_2 recipe" if augmented else "none",
                         "cores": cores, "batch": d.batch_size,
                         "sequences/s": f"{args.batches * d.batch_size / dt:.0f}",
                         "ms/batch": f"{1000 * dt / args.batches:.0f}"})
    return rows


def _flops(fn, spec) -> float:
    """Float operations of one call, counted by TensorFlow's graph profiler."""
    from asl_keras.runtime import tf

    graph = tf.function(fn).get_concrete_function(*spec).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return tf.compat.v1.profiler.profile(graph, options=opts).total_float_ops


def bench_model(args) -> list[dict]:
    """Parameters per component, encoder FLOPs and CPU forward time (batch 1)."""
    import numpy as np

    from asl_keras import config
    from asl_keras.models.recognizer import build_recognizer
    from asl_keras.runtime import tf

    def count(layer):
        return sum(int(np.prod(v.shape)) for v in layer.trainable_weights) if layer else 0

    rows = []
    for path in args.configs:
        cfg = config.load(path)
        model = build_recognizer(cfg)
        row = {"config": os.path.basename(path), "encoder": cfg.model.encoder,
               "extractors": f"{count(model.embedding):,}",
               "encoder params": f"{count(model.encoder):,}",
               "decoder": f"{count(model.decoder):,}",
               "decoder2 (train)": f"{count(model.backward_decoder):,}",
               "total": f"{count(model):,}"}
        for frames in (128, 384):
            x = tf.random.normal([1, frames, 130, 3])
            mask = tf.ones([1, frames])
            encode = tf.function(model.encode)
            spec = (tf.TensorSpec([1, frames, 130, 3]), tf.TensorSpec([1, frames]))
            row[f"GFLOPs T={frames}"] = f"{_flops(model.encode, spec) / 1e9:.2f}"
            encode(x, mask)  # trace
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                encode(x, mask)
            row[f"encode ms T={frames}"] = f"{1000 * (time.perf_counter() - t0) / args.repeats:.0f}"
        ids_fn = tf.function(model.generate)
        x, mask = tf.random.normal([1, 384, 130, 3]), tf.ones([1, 384])
        ids_fn(x, mask)
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            ids_fn(x, mask)
        row["encode+greedy ms T=384"] = f"{1000 * (time.perf_counter() - t0) / args.repeats:.0f}"
        rows.append(row)
    return rows


def bench_train(args) -> list[dict]:
    """Training micro-batch throughput on random inputs: with and without XLA, and with one or
    several micro-batches per call of the training function (`trainer.multi_step`, as the
    trainer runs them; the host reads each call's losses)."""
    import numpy as np

    from asl_keras import config, vocab
    from asl_keras.models.recognizer import build_recognizer
    from asl_keras.runtime import tf
    from asl_keras.training import optimizers
    from asl_keras.training.trainer import multi_step

    cfg = config.load(args.config, args.overrides)
    rng = np.random.default_rng(0)
    batch = {"landmarks": tf.constant(rng.normal(size=(args.batch, args.frames, 130, 3)),
                                      tf.float32),
             "mask": tf.ones([args.batch, args.frames]),
             "labels": tf.constant(rng.integers(0, vocab.NUM_CHARS, (args.batch, vocab.LABEL_LEN)),
                                   tf.int32),
             "score": tf.ones([args.batch])}
    rows = []
    for xla in (v == "on" for v in args.jit_compile):
        for per_call in args.steps_per_execution:
            model = build_recognizer(cfg)
            opt = optimizers.make_optimizer(cfg.train, 100)
            opt.build(model.trainable_variables)

            @tf.function(jit_compile=xla)
            def step(b, model=model, opt=opt):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(model.per_sample_loss(b, model(b, training=True)))
                opt.apply(tape.gradient(loss, model.trainable_variables),
                          model.trainable_variables)
                return loss

            run = multi_step(tf.distribute.get_strategy(), step)
            batches = iter(tf.data.Dataset.from_tensors(batch).repeat())
            t0 = time.perf_counter()
            run(batches, per_call).numpy()
            compile_s = time.perf_counter() - t0
            calls = max(1, args.steps // per_call)
            t0 = time.perf_counter()
            for _ in range(calls):
                run(batches, per_call).numpy()
            dt = (time.perf_counter() - t0) / (calls * per_call)
            rows.append({"config": os.path.basename(args.config), "jit_compile": xla,
                         "micro-batches per call": per_call,
                         "batch x frames": f"{args.batch} x {args.frames}",
                         "first call s (trace/compile)": f"{compile_s:.1f}",
                         "ms/micro-batch": f"{1000 * dt:.1f}", "micro-batches/s": f"{1 / dt:.1f}",
                         "samples/s": f"{args.batch / dt:.1f}",
                         "peak RSS MB (process so far)":
                             f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"})
    return rows


def bench_tflite(args) -> list[dict]:
    """Per-clip latency of the exported one-model and two-model ensembles, file size.

    Without `--checkpoints` the members are freshly initialised: an untrained decoder rarely
    emits EOS, so every clip decodes all 33 steps (the worst case of a trained model).
    """
    import numpy as np

    from asl_keras import config
    from asl_keras.export import tflite
    from asl_keras.models.recognizer import build_recognizer

    cfg = config.load(args.config)
    if args.checkpoints:
        members = tflite.load_models(cfg, args.checkpoints)
    else:
        with tflite.float32_policy():
            members = [build_recognizer(cfg) for _ in range(2)]
    rows = []
    for n in (1, 2):
        model = tflite.convert(members[:n], cfg.data.max_len, fp16=not args.no_fp16)
        for threads in (1, 2):
            run = tflite.runner(model, num_threads=threads)
            for frames in args.frames:
                times = tflite.clip_latencies_ms(run, frames, args.repeats)
                rows.append({"config": os.path.basename(args.config), "models": n,
                             "weights": "fp32" if args.no_fp16 else "fp16",
                             "size kB": f"{len(model) / 1024:,.0f}", "threads": threads,
                             "frames": frames, "p50 ms": f"{np.percentile(times, 50):.0f}",
                             "p95 ms": f"{np.percentile(times, 95):.0f}"})
    return rows


def bench_ablation(args) -> list[dict]:
    from asl_keras import ablation

    print(ablation.run(seeds=args.seeds, epochs=args.epochs, variants=args.variants))
    return []


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m asl_keras.bench")
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("convert", help="Kaggle parquet -> TFRecords throughput and memory")
    c.add_argument("--sequences", type=int, default=3000)
    c.add_argument("--per-file", type=int, default=1000)
    c.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    q = sub.add_parser("pipeline", help="training input pipeline throughput")
    q.add_argument("--config", default="configs/cfg_2.yaml")
    q.add_argument("--sequences", type=int, default=1000)
    q.add_argument("--per-file", type=int, default=250)
    q.add_argument("--batches", type=int, default=30)
    m = sub.add_parser("model", help="parameters, FLOPs and CPU forward time")
    m.add_argument("--configs", nargs="+", default=["configs/cfg_1.yaml", "configs/cfg_2.yaml",
                                                    "configs/cfg_2_squeezeformer.yaml"])
    m.add_argument("--repeats", type=int, default=5)
    t = sub.add_parser("train", help="training samples/s on this CPU, with and without XLA, "
                       "with one or several micro-batches per call")
    t.add_argument("--config", default="configs/cfg_2.yaml")
    t.add_argument("overrides", nargs="*", help="key.path=value config overrides")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--frames", type=int, default=384)
    t.add_argument("--steps", type=int, default=3,
                   help="timed micro-batches per row (at least one call)")
    t.add_argument("--jit-compile", nargs="+", choices=["off", "on"], default=["off", "on"])
    t.add_argument("--steps-per-execution", type=int, nargs="+", default=[1],
                   help="micro-batches per call of the training function, one row each")
    f = sub.add_parser("tflite", help="TFLite per-clip latency and size, 1 and 2 models")
    f.add_argument("--config", default="configs/cfg_2.yaml")
    f.add_argument("--checkpoints", nargs="*", help="two .weights.h5 (default: untrained)")
    f.add_argument("--frames", type=int, nargs="+", default=[64, 128, 256, 384, 600])
    f.add_argument("--repeats", type=int, default=5)
    f.add_argument("--no-fp16", action="store_true")
    a = sub.add_parser("ablation", help="Zipformer ablation: train, score, time 5 variants")
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    a.add_argument("--epochs", type=int, help="override the ablation config's epochs")
    a.add_argument("--variants", nargs="+", default=list("abcde"))
    args = p.parse_args(argv)
    os.makedirs(BENCH_DIR, exist_ok=True)
    rows = {"convert": bench_convert, "pipeline": bench_pipeline, "model": bench_model,
            "train": bench_train, "tflite": bench_tflite,
            "ablation": bench_ablation}[args.what](args)
    print(f"machine: {psutil.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB")
    if rows:
        print(_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
