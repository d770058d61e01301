"""Two worker processes on localhost (MultiWorkerMirroredStrategy from TF_CONFIG) train like
one process on the same global batch split the same way (see multiworker_worker.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def launch(records, runs_dir, steps, tf_config=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen([sys.executable, "-m", "tests.training.multiworker_worker",
                             str(records), str(runs_dir), str(steps)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def losses_of(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    line = next(ln for ln in out.splitlines() if ln.startswith("LOSSES "))
    return json.loads(line[len("LOSSES "):])


@pytest.mark.slow
def test_two_workers_train_like_one_process(synthetic_records, tmp_path):
    steps = 4
    single = losses_of(launch(synthetic_records, tmp_path / "single", steps))
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    workers = [launch(synthetic_records, tmp_path / "multi", steps,
                      {"cluster": cluster, "task": {"type": "worker", "index": i}})
               for i in range(2)]
    results = [losses_of(w) for w in workers]
    assert single["replicas"] == 2
    for r in results:
        assert r["replicas"] == 2
        assert r["losses"] == pytest.approx(single["losses"], rel=1e-5)
    # the optimizer moved (clipping at 0.5 active): losses change step to step
    assert len(set(round(x, 6) for x in single["losses"])) == steps


TINY_RUN = ["data.max_len=32", "data.buffer_len=64", "data.batch_size=4", "data.scores=null",
            "data.shuffle_buffer=32", "model.dim=16", "model.blocks=1", "model.decoder_ffn=32",
            "model.kernel_size=5", "model.backward_decoder=false", "train.grad_accumulation=1",
            "train.eval_batch_size=16", "train.eval_every=100", "name=mw", "data.fold=0"]


def train_worker(records, runs_dir, epochs, index, cluster, resume=False):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                "index": index}})
    cmd = [sys.executable, "train_tf.py", "--config", "configs/cfg_2_squeezeformer.yaml",
           *TINY_RUN, f"data.records={records}", f"train.runs_dir={runs_dir}",
           f"train.epochs={epochs}"] + (["--resume"] if resume else [])
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_killing_a_worker_gives_a_clear_error_and_the_run_resumes(synthetic_records, tmp_path):
    import time

    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    runs = tmp_path / "runs"
    workers = [train_worker(synthetic_records, runs, 40, i, cluster) for i in range(2)]
    ckpt = runs / "mw_fold0_seed0" / "ckpt" / "checkpoint"
    deadline = time.time() + 300
    while not ckpt.exists() and time.time() < deadline and workers[0].poll() is None:
        time.sleep(0.5)
    assert ckpt.exists(), workers[0].communicate()[1][-3000:]
    workers[1].kill()
    _, err = workers[0].communicate(timeout=300)
    assert workers[0].returncode == 2, err[-3000:]
    assert "lost another worker" in err and "--resume" in err, err[-3000:]
    # both workers restarted with --resume finish from the last checkpoint
    done = sorted(int(p.name.split("-")[1].split(".")[0])
                  for p in ckpt.parent.glob("ckpt-*.index"))
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    last = done[-1] + 1
    workers = [train_worker(synthetic_records, runs, last, i, cluster, resume=True)
               for i in range(2)]
    for w in workers:
        out, err = w.communicate(timeout=600)
        assert w.returncode == 0, err[-3000:]
    with open(runs / "mw_fold0_seed0" / "history.csv") as f:
        epochs = [int(line.split(",")[0]) for line in f.read().splitlines()[1:]]
    assert epochs == list(range(1, last + 1))
