"""Two worker processes on localhost (MultiWorkerMirroredStrategy from TF_CONFIG) train like
one process on the same global batch split the same way (see multiworker_worker.py), and only
the chief of a cluster prepares missing records while the others wait for them."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time

import pytest

from tests.paths import REPO, checkout_env, config_path


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def launch(records, runs_dir, steps, tf_config=None):
    env = checkout_env({k: v for k, v in os.environ.items() if k != "TF_CONFIG"})
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen([sys.executable, "-m", "tests.training.multiworker_worker",
                             str(records), str(runs_dir), str(steps)], cwd=REPO, env=env,
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
    """A training process; `resume` continues the run with another `epochs` (forced)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                "index": index}})
    cmd = [sys.executable, os.path.join(REPO, "train_tf.py"), "--config",
           config_path("cfg_2_squeezeformer.yaml"),
           *TINY_RUN, f"data.records={records}", f"train.runs_dir={runs_dir}",
           f"train.epochs={epochs}"] + (["--resume", "--force-resume"] if resume else [])
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_killing_a_worker_gives_a_clear_error_and_the_run_resumes(synthetic_records, tmp_path):
    """Slow (about 80 s): two worker processes start TensorFlow, train until a checkpoint,
    one is killed, and both are started again to resume; each start costs its import and
    trace."""
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
    # both workers restarted with --resume finish the epoch after the last checkpoint's
    import tensorflow as tf

    done = tf.train.load_checkpoint(str(ckpt.parent)).get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE")
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    last = int(done) + 1
    workers = [train_worker(synthetic_records, runs, last, i, cluster, resume=True)
               for i in range(2)]
    for w in workers:
        out, err = w.communicate(timeout=600)
        assert w.returncode == 0, err[-3000:]
    with open(runs / "mw_fold0_seed0" / "history.csv") as f:
        epochs = [int(line.split(",")[0]) for line in f.read().splitlines()[1:]]
    assert epochs == list(range(1, last + 1))


def prepare_worker(kaggle_dir, records, index, cluster):
    """A process that prepares the records as worker `index` of `cluster` (no training)."""
    env = checkout_env({k: v for k, v in os.environ.items() if k != "TF_CONFIG"})
    env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker",
                                                                "index": index}})
    return subprocess.Popen([sys.executable, "-m", "tests.training.prepare_records_worker",
                             str(kaggle_dir), str(records)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_only_the_chief_generates_and_converts_missing_records(tmp_path):
    """Worker 1 starts first and waits; worker 0 then generates and converts, once."""
    from asl_keras.data import convert

    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    kaggle_dir, records = tmp_path / "kaggle", tmp_path / "records"
    other = prepare_worker(kaggle_dir, records, 1, cluster)
    assert select.select([other.stdout], [], [], 300)[0], "worker 1 printed nothing"
    first = other.stdout.readline()
    assert "waiting" in first, first + other.communicate(timeout=600)[1][-3000:]
    assert not kaggle_dir.exists() and not records.exists()  # worker 1 wrote nothing
    chief = prepare_worker(kaggle_dir, records, 0, cluster)
    chief_out, chief_err = chief.communicate(timeout=600)
    other_out, other_err = other.communicate(timeout=600)
    assert chief.returncode == 0, chief_err[-3000:]
    assert other.returncode == 0, other_err[-3000:]
    assert "generating synthetic data" in chief_out and "converting" in chief_out
    assert "waiting" not in chief_out
    assert "generating" not in other_out and "converting" not in other_out
    ready = [ln for ln in (chief_out + other_out).splitlines() if ln.startswith("READY")]
    written = convert.verify(str(kaggle_dir), str(records))["records"]
    assert written > 0 and ready == [f"READY {written}"] * 2
    assert not [n for n in os.listdir(records) if ".tmp" in n]  # no abandoned shard


@pytest.mark.parametrize("tf_config,chief", [
    (None, None),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, None),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}},
     "worker 0 at a:1"),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "evaluator", "index": 0}},
     "worker 0 at a:1"),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}},
     "chief 0 at c:1"),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}},
     None),
])
def test_the_chief_is_read_from_tf_config(monkeypatch, tf_config, chief):
    from asl_keras.training import strategy

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert strategy.chief_elsewhere() == chief


def test_a_worker_without_its_chief_stops_waiting_with_a_clear_error(tmp_path, monkeypatch):
    from asl_keras import config
    from asl_keras.training import run

    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["host0:2222",
                                                                       "host1:2222"]},
                                                "task": {"type": "worker", "index": 1}}))
    cfg = config.load(config_path("demo.yaml"), [f"data.kaggle_dir={tmp_path}/kaggle",
                                                 f"data.records={tmp_path}/records",
                                                 "data.records_wait=0.5",
                                                 "data.synthetic.train=8",
                                                 "data.synthetic.supplemental=0"])
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as e:
        run.prepare_records(cfg)
    assert time.monotonic() - start < 4  # the timeout ends the wait, not a long poll
    assert f"{tmp_path}/records" in str(e.value) and "0.5 s" in str(e.value)
    assert "worker 0 at host0:2222" in str(e.value)
    assert not (tmp_path / "kaggle").exists()  # only the chief generates the synthetic set


@pytest.mark.parametrize("cluster,task,chief", [
    ({"worker": ["a:1", "b:1"]}, ("worker", 0), True),
    ({"worker": ["a:1", "b:1"]}, ("worker", 1), False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, ("worker", 0), False),  # the chief task writes
    ({"chief": ["c:1"], "worker": ["a:1"]}, ("chief", 0), True),
    ({"worker": ["a:1"]}, ("evaluator", 0), False),
])
def test_one_process_of_a_cluster_writes(cluster, task, chief):
    """`is_chief` (who writes checkpoints) agrees with `chief_elsewhere` (who prepares data)."""
    from asl_keras.runtime import tf
    from asl_keras.training import strategy

    class Resolver:
        task_type, task_id = task

        def cluster_spec(self):
            return tf.train.ClusterSpec(cluster)

    fake = type("Strategy", (), {"cluster_resolver": Resolver()})()
    assert strategy.is_chief(fake) is chief
    assert strategy.is_chief(type("Strategy", (), {})())  # one process: it writes
