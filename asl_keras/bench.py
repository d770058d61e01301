"""Benchmarks; each prints one table. Numbers in the README come from these commands.

    python -m asl_keras.bench convert  [--sequences 3000 --per-file 1000]
    python -m asl_keras.bench pipeline --config configs/cfg_2.yaml [--batches 30]
    python -m asl_keras.bench model [--configs configs/cfg_1.yaml ...]
    python -m asl_keras.bench train --configs configs/cfg_2.yaml [--batch 16 --frames 384]
                                    [--jit-compile off on] [--steps-per-execution 1 16]
    python -m asl_keras.bench ctc [--batch 64 --frames 384]
    python -m asl_keras.bench tflite [--configs configs/cfg_2.yaml ...] [--against REF.tflite]
                                     [--members 1 2] [--threads 1 2] [--checkpoints A B]
    python -m asl_keras.bench clips --tflite A.tflite [B.tflite] --records DIR [--clips 200]
    python -m asl_keras.bench decoding --config C [--checkpoints A B C --records DIR]
                                       [--modes attention ctc joint joint-beam4] [--members 1 2 3]
                                       [--weights fp16 int8] [--threads 1 2] [--grid 4:int8:joint]
    python -m asl_keras.bench curves --runs RUN_DIR [RUN_DIR ...] [--labels ...] [--out PNG]
    python -m asl_keras.bench ablation [--presets default hard] [--seeds 0 1 2] [--jobs 2]
                                       [--variants a c d e] [--lr-factors 0.5 1 2]
                                       [--scale cpu|gpu] [--update-readme]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import platform
import resource
import shutil
import subprocess
import sys
import time

import psutil

from asl_keras import ablation

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
    """Training micro-batch throughput of the trainer's own step (`Trainer.train_steps`: the
    loss, loss scaling, clipping and schedule as `asl-train` runs them) on random inputs of one
    shape: with and without XLA (`train.jit_compile`), and with one or several micro-batches
    per call (`train.steps_per_execution`; the host reads each call's losses)."""
    import numpy as np

    from asl_keras import config, vocab
    from asl_keras.data import convert
    from asl_keras.runtime import tf
    from asl_keras.training import trainer

    records = os.path.join(BENCH_DIR, "records_train")  # the trainer counts steps from them
    convert.convert(synthetic_set(64, 32), records, workers=1, progress=False)
    rng = np.random.default_rng(0)
    batch = {"landmarks": tf.constant(rng.normal(size=(args.batch, args.frames, 130, 3)),
                                      tf.float32),
             "mask": tf.ones([args.batch, args.frames]),
             "labels": tf.constant(rng.integers(0, vocab.NUM_CHARS, (args.batch, vocab.LABEL_LEN)),
                                   tf.int32),
             "score": tf.ones([args.batch])}
    rows = []
    for path, xla, per_call in itertools.product(args.configs,
                                                 [v == "on" for v in args.jit_compile],
                                                 args.steps_per_execution):
        cfg = config.load(path, [
            *args.overrides, f"data.records={records}", "data.scores=null", "data.fold=0",
            f"data.batch_size={args.batch}", f"data.max_len={args.frames}",
            f"train.jit_compile={str(xla).lower()}", f"train.steps_per_execution={per_call}",
            f"train.runs_dir={os.path.join(BENCH_DIR, 'runs_train')}"])
        t = trainer.Trainer(cfg, verbose=False)
        batches = iter(t.strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensors(batch).repeat()))
        t0 = time.perf_counter()
        t.train_steps(batches, per_call).numpy()
        compile_s = time.perf_counter() - t0
        calls = max(1, args.steps // per_call)
        t0 = time.perf_counter()
        for _ in range(calls):
            t.train_steps(batches, per_call).numpy()
        dt = (time.perf_counter() - t0) / (calls * per_call)
        rows.append({"config": os.path.basename(path), "jit_compile": xla,
                     "micro-batches per call": per_call,
                     "batch x frames": f"{args.batch} x {args.frames}",
                     "first call s (trace/compile)": f"{compile_s:.1f}",
                     "ms/micro-batch": f"{1000 * dt:.1f}", "micro-batches/s": f"{1 / dt:.1f}",
                     "samples/s": f"{args.batch / dt:.1f}",
                     "peak RSS MB (process so far)":
                         f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"})
    return rows


def bench_ctc(args) -> list[dict]:
    """The CTC head's loss and its gradient (`ctc.ctc_loss_per_char`) at the training shape:
    TensorFlow's fused kernel (sparse labels, the path without XLA) and the dense-label CTC
    (the path of compiled steps), each with and without XLA where it compiles."""
    import numpy as np

    from asl_keras import vocab
    from asl_keras.layers import ctc
    from asl_keras.runtime import tf

    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(args.batch, args.frames, ctc.CLASSES)), tf.float32)
    lengths = rng.integers(5, 30, args.batch)
    labels = tf.constant([vocab.to_labels(rng.integers(0, vocab.NUM_CHARS, n)) for n in lengths],
                         tf.int32)
    mask = tf.constant(np.arange(args.frames)[None] < rng.integers(args.frames // 2, args.frames,
                                                                    (args.batch, 1)), tf.float32)
    rows = []
    for dense, xla in ((False, False), (True, False), (True, True)):
        @tf.function(jit_compile=xla)
        def loss_and_gradient(x, dense=dense):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(ctc.ctc_loss_per_char(labels, x, mask, xla=dense))
            return loss, tape.gradient(loss, x)

        t0 = time.perf_counter()
        loss_and_gradient(logits)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            loss_and_gradient(logits)[1].numpy()
        ms = 1000 * (time.perf_counter() - t0) / args.repeats
        rows.append({"CTC": "dense labels" if dense else "fused (sparse labels)",
                     "jit_compile": xla, "batch x frames": f"{args.batch} x {args.frames}",
                     "first call s": f"{first:.1f}", "ms (loss + gradient)": f"{ms:.1f}"})
    return rows


def worst_case(model) -> None:
    """Bench-only weights that make every call decode all LABEL_LEN steps (an untrained
    decoder stops at a random step): the final decoder LayerNorm pins feature 0 at 1 and
    `lm_head` maps it to -1e4 for every id that is not a character (EOS, PAD, SOS, the mask
    token), so each step emits a character; the confidence head always says "sure". Only
    weights change: the graph is the one users ship."""
    import numpy as np

    from asl_keras import vocab

    norm, head = model.decoder.layer_norm, model.decoder.lm_head
    gamma, beta, kernel = norm.gamma.numpy(), norm.beta.numpy(), head.kernel.numpy()
    gamma[0], beta[0] = 0.0, 1.0
    kernel[0] = 0.0
    kernel[0, vocab.NUM_CHARS:] = -1e4
    norm.gamma.assign(gamma)
    norm.beta.assign(beta)
    head.kernel.assign(kernel)
    if model.confidence_head is not None:
        model.confidence_head.kernel.assign(np.zeros(model.confidence_head.kernel.shape))
        model.confidence_head.bias.assign(np.full(model.confidence_head.bias.shape, 10.0))


def stage_functions(members, max_len: int) -> dict:
    """The serving graph cut after each stage (`tflite.serving_function` in parts), so that
    the time of a stage is the difference of two graphs' times."""
    from asl_keras.export import tflite
    from asl_keras.runtime import tf

    def preprocessing(inputs):
        x, mask = tflite.encoder_inputs(tflite.at_least_one_frame(inputs), max_len)
        return {tflite.OUTPUT: tf.reduce_sum(x, axis=[2, 3])}

    def encoders(inputs):
        x, mask = tflite.encoder_inputs(tflite.at_least_one_frame(inputs), max_len)
        encoded, confidence, _ = tflite.encode(members, x, mask)
        out = tf.add_n([tf.reduce_sum(e, axis=-1) for _, e, _ in encoded])
        return {tflite.OUTPUT: out if confidence is None else out + confidence[:, None]}

    return {"preprocessing": preprocessing, "encoders": encoders,
            "whole": tflite.serving_function(members, max_len)}


def against_columns(path: str) -> list[str]:
    """Input columns of another TFLite model: `selected_columns` of the `*inference_args.json`
    beside it (its own column order), else this project's SELECTED_COLUMNS."""
    import json

    from asl_keras import landmarks
    from asl_keras.runtime import tf

    found = sorted(tf.io.gfile.glob(os.path.join(os.path.dirname(path) or ".",
                                                 "*inference_args.json")))
    if not found:
        return list(landmarks.SELECTED_COLUMNS)
    with tf.io.gfile.GFile(found[0]) as f:
        return json.load(f)["selected_columns"]


def bench_tflite(args) -> list[dict]:
    """Per-clip latency of exported 1- and 2-model fp16 ensembles, the time of each stage,
    the operators of one decoding step, and with `--against` the side-by-side ratio.

    Without `--checkpoints` the members are untrained with `worst_case` weights: every call
    decodes all 33 steps. Every model sees the same clip (a sample clip repeated to the
    frame count; `--against` gets it in its own column order), the calls are interleaved and
    the ratio is the median of per-round ratios, so machine drift cancels. Stage times are
    differences of the serving graph cut after preprocessing, after the encoders, and whole.
    """
    import numpy as np

    from asl_keras import config, landmarks
    from asl_keras.export import tflite
    from asl_keras.models.recognizer import build_recognizer
    from asl_keras.runtime import tf

    position = {c: i for i, c in enumerate(landmarks.SELECTED_COLUMNS)}
    theirs = None
    if args.against:
        columns = against_columns(args.against)
        missing = sorted(set(columns) - position.keys())
        if missing:
            raise SystemExit(f"{args.against}: columns {missing[:3]} are not landmark columns")
        theirs = [position[c] for c in columns]
        with tf.io.gfile.GFile(args.against, "rb") as f:
            reference = f.read()
    base = landmarks.sample_clips(1, seed=0)[0]
    rows = []
    for path in args.configs:
        cfg = config.load(path)
        if args.checkpoints:
            members = tflite.load_models(cfg, args.checkpoints)
        else:
            with tflite.float32_policy():
                members = [build_recognizer(cfg) for _ in range(max(args.members))]
            for m in members:
                worst_case(m)
        for n in args.members:
            graphs = {k: tflite.convert_function(fn, members[:n],
                                                "fp32" if args.no_fp16 else "fp16")
                      for k, fn in stage_functions(members[:n], cfg.data.max_len).items()}
            ops = tflite.subgraph_operators(graphs["whole"])
            step_ops = sum(v for k, v in ops.items() if "while_body" in k or "while_cond" in k)
            for threads in args.threads:
                runners = {k: tflite.runner(g, num_threads=threads) for k, g in graphs.items()}
                if theirs is not None:
                    runners["reference"] = tflite.runner(reference, num_threads=threads)
                for frames in args.frames:
                    clip = np.resize(base, (frames, base.shape[1])).astype("float32")
                    clips = {k: clip for k in graphs}
                    if theirs is not None:
                        clips["reference"] = np.ascontiguousarray(clip[:, theirs])
                    times, out_rows = tflite.interleaved_latencies_ms(runners, clips, args.repeats)
                    med = {k: float(np.median(v)) for k, v in times.items()}
                    decoding = med["whole"] - med["encoders"]
                    row = {"config": os.path.basename(path), "models": n,
                           "weights": "fp32" if args.no_fp16 else "fp16",
                           "size kB": f"{len(graphs['whole']) / 1e3:,.0f}", "threads": threads,
                           "frames": frames, "rows": out_rows["whole"],
                           "p50 ms": f"{med['whole']:.1f}",
                           "p95 ms": f"{np.percentile(times['whole'], 95):.1f}",
                           "preprocess ms": f"{med['preprocessing']:.1f}",
                           "encoders ms": f"{med['encoders'] - med['preprocessing']:.1f}",
                           "decoding ms": f"{decoding:.1f}",
                           "ms/step": f"{decoding / max(out_rows['whole'], 1):.2f}",
                           "ops/step": step_ops}
                    if theirs is not None:
                        ratio = times["whole"] / times["reference"]
                        row.update({"ref rows": out_rows["reference"],
                                    "ref p50 ms": f"{med['reference']:.1f}",
                                    "ref p95 ms": f"{np.percentile(times['reference'], 95):.1f}",
                                    "ratio": f"{np.median(ratio):.2f}"})
                    rows.append(row)
                    print(_table([row]).splitlines()[-1], flush=True)
    return rows


def bench_clips(args) -> list[dict]:
    """Per-clip latency of exported `.tflite` files on held-out clips of a TFRecords
    conversion (real lengths, each model stopping where it decodes EOS), interleaved clip by
    clip so that the files are compared under the same machine load."""
    import numpy as np

    from asl_keras.export import tflite

    clips = tflite.record_clips(args.records, args.fold, args.clips)
    rows = []
    for threads in args.threads:
        runners = {p: tflite.runner(p, num_threads=threads) for p in args.tflite}
        times = {p: [] for p in args.tflite}
        for frames in clips.frames:  # each clip: one untimed call, then one timed, per file
            clip_times, _ = tflite.interleaved_latencies_ms(
                runners, dict.fromkeys(runners, frames), 1)
            for p, t in clip_times.items():
                times[p].extend(t)
        for p in args.tflite:
            t = np.asarray(times[p])
            rows.append({"model": p, "threads": threads, "clips": len(t),
                         "frames p50": f"{np.median([len(f) for f in clips.frames]):.0f}",
                         "mean ms": f"{t.mean():.1f}", "p50 ms": f"{np.median(t):.1f}",
                         "p95 ms": f"{np.percentile(t, 95):.1f}",
                         "vs first": f"{np.median(t / np.asarray(times[args.tflite[0]])):.2f}"})
    return rows


def parse_mode(name: str):
    """`attention`, `ctc`, `joint`, `attention-beam4`, `joint-beam4` -> a Decoding."""
    from asl_keras.decoding import Decoding

    mode, _, beam = name.partition("-beam")
    return Decoding(mode, beam=int(beam) if beam else 1)


def bench_decoding(args) -> list[dict]:
    """Decoding mode x members x stored weights -> score, latency, size, projected hours.

    With `--checkpoints` (trained members; the first n make an n-member ensemble) and
    `--records`: every file is scored on the held-out clips (`--fold`) one clip at a time on 1
    thread, the latency of each call timed; 1 member is run for every checkpoint separately
    and reported as mean +- std over them (the seed spread). Latency at more threads: the
    first `--timed-clips` clips again. Without checkpoints: untrained `--config` members with
    `worst_case` weights (every call decodes all 33 steps), timed on a sample clip of
    `--frames` frames; no score. Projected hours: mean latency on 1 thread x 67,208 clips.
    """
    import numpy as np

    from asl_keras import config, evaluate, landmarks
    from asl_keras.export import tflite
    from asl_keras.models.recognizer import build_recognizer
    from asl_keras.training.metrics import normalized_total

    cfg = config.load(args.config)
    grid = ([(int(n), w, m) for n, w, m in (g.split(":") for g in args.grid)] if args.grid else
            [(n, w, m) for m in args.modes for n in args.members for w in args.weights])
    most = max(n for n, _, _ in grid)
    if args.checkpoints and (not args.records or len(args.checkpoints) < most):
        raise SystemExit(f"bench decoding: --checkpoints need --records (the clips they score) "
                         f"and at least {most} checkpoints (the largest ensemble)")
    if args.checkpoints:
        models = tflite.load_models(cfg, args.checkpoints)
        clips = tflite.record_clips(args.records, args.fold, args.clips)
    else:
        with tflite.float32_policy():
            models = [build_recognizer(cfg) for _ in range(most)]
        for m in models:
            worst_case(m)
        base = landmarks.sample_clips(1, seed=0)[0]
        clips = tflite.CheckClips("sample", [np.resize(base, (args.frames, base.shape[1]))
                                                .astype("float32")])
    rows = []
    for n, weights, mode in grid:
        decoding = parse_mode(mode)
        groups = ([[m] for m in models] if n == 1 and args.checkpoints else [models[:n]])
        scores, times, sizes = [], {t: [] for t in args.threads}, []
        for members in groups:
            model = tflite.convert(members, cfg.data.max_len, weights, decoding)
            sizes.append(len(model))
            for threads in args.threads:
                run = tflite.runner(model, num_threads=threads)
                timed = clips.frames if threads == 1 else clips.frames[:args.timed_clips]
                repeats = 1 if args.checkpoints else args.repeats
                texts = []
                for frames in timed:
                    ms, _ = tflite.interleaved_latencies_ms({0: run}, {0: frames}, repeats)
                    times[threads].extend(ms[0])
                    if threads == 1 and clips.phrases:
                        texts.append(tflite.tflite_text(run, frames))
                if texts:
                    scores.append(normalized_total(clips.phrases, texts))
        row = {"decoding": decoding.describe(), "members": n, "weights": weights,
               "size kB": f"{np.mean(sizes) / 1e3:,.0f}"}
        if scores:
            row["score"] = (f"{np.mean(scores):.4f} +- {np.std(scores):.4f}" if len(scores) > 1
                            else f"{scores[0]:.4f}")
            row["per seed"] = " ".join(f"{s:.4f}" for s in scores) if len(scores) > 1 else ""
        for threads in args.threads:
            t = np.asarray(times[threads])
            row[f"p50 ms {threads}t"] = f"{np.median(t):.1f}"
            row[f"p95 ms {threads}t"] = f"{np.percentile(t, 95):.1f}"
        mean = float(np.mean(times[args.threads[0]]))
        row["hours"] = f"{mean / 1000 * evaluate.HIDDEN_TEST_SEQUENCES / 3600:.2f}"
        rows.append(row)
        print(_table([row]).splitlines()[-1], flush=True)
    where = (f"{len(clips.frames)} clips of {clips.source}" if args.checkpoints else
             f"a {args.frames}-frame sample clip, untrained members decoding all 33 steps")
    print(f"{args.config}: {where}; hours for {evaluate.HIDDEN_TEST_SEQUENCES:,} clips at the "
          f"mean latency on {args.threads[0]} thread(s)")
    return rows


def bench_curves(args) -> list[dict]:
    """Learning curves of finished runs (their history.csv and config.yaml): one row per run,
    the validation score against the epoch in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import yaml

    from asl_keras.runtime import tf
    from asl_keras.training.trainer import read_history, save_png

    rows = []
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, folder in enumerate(args.runs):
        label = args.labels[i] if args.labels and i < len(args.labels) else os.path.basename(
            folder.rstrip("/"))
        history = read_history(folder)
        with tf.io.gfile.GFile(os.path.join(folder, "config.yaml")) as f:
            cfg = yaml.safe_load(f)
        scored = history.dropna(subset=["score"])
        ax.plot(scored["epoch"], scored["score"], marker="o", label=label)
        rows.append({"run": label, "batch": cfg["data"]["batch_size"],
                     "lr": f"{cfg['train']['learning_rate']:g}",
                     "epochs": int(history["epoch"].max()),
                     "train min": f"{history['seconds'].sum() / 60:.1f}",
                     "score by epoch": ", ".join(f"{e}: {v:.3f}" for e, v in
                                                 zip(scored["epoch"], scored["score"],
                                                     strict=True)),
                     "final": f"{scored['score'].iloc[-1]:.4f}" if len(scored) else "-"})
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation score")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, args.out)
    print(f"wrote {args.out}")
    return rows


def bench_ablation(args) -> list[dict]:
    print(ablation.run(seeds=args.seeds, variants=args.variants, presets=args.presets,
                       lr_factors=args.lr_factors, scale=args.scale, jobs=args.jobs,
                       table_path=args.table, readme=args.update_readme))
    return []


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m asl_keras.bench")
    p.add_argument("--write", metavar="FILE", help="also write the table to this Markdown file, "
                   "with the command, commit, date and machine")
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
    t.add_argument("--configs", nargs="+", default=["configs/cfg_2.yaml"])
    t.add_argument("overrides", nargs="*", help="key.path=value config overrides")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--frames", type=int, default=384)
    t.add_argument("--steps", type=int, default=3,
                   help="timed micro-batches per row (at least one call)")
    t.add_argument("--jit-compile", nargs="+", choices=["off", "on"], default=["off", "on"])
    t.add_argument("--steps-per-execution", type=int, nargs="+", default=[1],
                   help="micro-batches per call of the training function, one row each")
    g = sub.add_parser("ctc", help="the CTC loss and gradient: fused kernel and dense labels, "
                       "with and without XLA")
    g.add_argument("--batch", type=int, default=64)
    g.add_argument("--frames", type=int, default=384)
    g.add_argument("--repeats", type=int, default=10)
    f = sub.add_parser("tflite", help="TFLite per-clip latency by stage, size, ops per "
                       "decoding step; side by side with another .tflite (--against)")
    f.add_argument("--configs", nargs="+", default=["configs/cfg_2.yaml"])
    f.add_argument("--checkpoints", nargs="*",
                   help="the members' checkpoints (default: untrained, all 33 steps decoded)")
    f.add_argument("--members", type=int, nargs="+", default=[1, 2])
    f.add_argument("--against", help="a .tflite of the same contract to time side by side")
    f.add_argument("--frames", type=int, nargs="+", default=[64, 128, 256, 384])
    f.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    f.add_argument("--repeats", type=int, default=7)
    f.add_argument("--no-fp16", action="store_true")
    k = sub.add_parser("clips", help="per-clip latency of .tflite files on held-out records")
    k.add_argument("--tflite", nargs="+", required=True)
    k.add_argument("--records", required=True)
    k.add_argument("--fold", type=int, default=0)
    k.add_argument("--clips", type=int, default=200)
    k.add_argument("--threads", type=int, nargs="+", default=[1])
    d = sub.add_parser("decoding", help="decoding mode x members x weights: score, latency, "
                       "size and projected hours")
    d.add_argument("--config", required=True)
    d.add_argument("--checkpoints", nargs="*", help="trained members (default: untrained, "
                   "worst case); the first n make an n-member ensemble")
    d.add_argument("--records", help="TFRecords whose held-out clips score the files")
    d.add_argument("--fold", type=int, default=0)
    d.add_argument("--clips", type=int, default=10**6, help="at most this many held-out clips")
    d.add_argument("--timed-clips", type=int, default=100,
                   help="clips timed again at the other thread counts")
    d.add_argument("--modes", nargs="+", default=["attention", "ctc", "joint", "joint-beam4"])
    d.add_argument("--members", type=int, nargs="+", default=[1, 2, 3])
    d.add_argument("--weights", nargs="+", default=["fp16", "int8"])
    d.add_argument("--grid", nargs="+", help="members:weights:mode cells instead of the product")
    d.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    d.add_argument("--frames", type=int, default=128, help="clip length without checkpoints")
    d.add_argument("--repeats", type=int, default=5, help="timed calls without checkpoints")
    v = sub.add_parser("curves", help="learning curves of finished runs: a row each, a PNG")
    v.add_argument("--runs", nargs="+", required=True, help="run folders (with history.csv)")
    v.add_argument("--labels", nargs="+", help="one per run (default: the folder names)")
    v.add_argument("--out", default=os.path.join(BENCH_DIR, "curves.png"))
    a = sub.add_parser("ablation", help="encoder/optimizer ablation: learning-rate search, "
                       "then seeds at the best rate, on each data preset")
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a.add_argument("--variants", nargs="+", default=list(ablation.VARIANTS))
    a.add_argument("--presets", nargs="+", default=["default", "hard"])
    a.add_argument("--lr-factors", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    a.add_argument("--scale", default="cpu", help="cpu (default) or gpu: sizes of every run")
    a.add_argument("--jobs", type=int, default=2, help="runs at a time, one thread each")
    a.add_argument("--table", help="write the tables (Markdown) to this file")
    a.add_argument("--update-readme", metavar="FILE",
                   help="also write the tables into this file between its ablation markers")
    args = p.parse_args(argv)
    os.makedirs(BENCH_DIR, exist_ok=True)
    argv = sys.argv[1:] if argv is None else list(argv)
    rows = {"convert": bench_convert, "pipeline": bench_pipeline, "model": bench_model,
            "train": bench_train, "ctc": bench_ctc, "tflite": bench_tflite, "clips": bench_clips,
            "decoding": bench_decoding, "curves": bench_curves,
            "ablation": bench_ablation}[args.what](args)
    print(f"machine: {machine()}")
    if rows:
        print(_table(rows))
        if args.write:
            write_table(args.write, rows, argv)
    return 0


def machine() -> str:
    """This machine in one line: processor, cores, memory."""
    return (f"{platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB")


def write_table(path: str, rows: list[dict], argv: list[str]) -> None:
    """A Markdown file of one table: the command that made it, the commit, date and machine."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"Made by `python -m asl_keras.bench {' '.join(argv)}` at commit {commit} on "
                f"{time.strftime('%Y-%m-%d')}, machine: {machine()}.\n\n{_table(rows)}\n")


if __name__ == "__main__":
    raise SystemExit(main())
