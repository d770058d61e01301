"""The console scripts setup.cfg declares run the very functions of the documented commands
(`python train_tf.py`, `python export_tflite.py`, `python -m asl_keras.evaluate`,
`python -m asl_keras.data.convert`), checked without installing the package."""

import configparser
import importlib
import os
import shlex
import subprocess
import sys

import pytest

import export_tflite
import train_tf
from asl_keras import evaluate
from asl_keras.data import convert
from tests.paths import REPO

# Console script -> the function its documented command runs.
COMMANDS = {
    "asl-train": train_tf.main,
    "asl-export": export_tflite.main,
    "asl-evaluate": evaluate.main,
    "asl-convert": convert.main,
}


def console_scripts() -> dict[str, str]:
    """setup.cfg's console scripts: name -> `module:function`."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.path.join(REPO, "setup.cfg"), encoding="utf-8")
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict((part.strip() for part in line.split("=", 1)) for line in lines)


def test_setup_cfg_declares_every_command():
    assert sorted(console_scripts()) == sorted(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_console_script_runs_the_documented_commands_function(name):
    module, function = console_scripts()[name].split(":")
    assert getattr(importlib.import_module(module), function) is COMMANDS[name]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_exits_0(name, capsys):
    with pytest.raises(SystemExit) as e:
        COMMANDS[name](["--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ")


def test_train_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        train_tf.main(["--help"])
    assert "3: stopped at `train.time_limit_hours`" in capsys.readouterr().out


@pytest.mark.parametrize("prog,start", [("train_tf.py", ["python", "train_tf.py"]),
                                        ("asl-train", ["asl-train"])])
def test_usage_and_resume_command_name_the_command_that_ran(prog, start, monkeypatch, capsys):
    from asl_keras.training import run

    args = run.parse_args(["--config", "c.yaml", "--seed", "2", "train.epochs=3"], prog=prog)
    assert shlex.split(run.resume_command(args)) == [*start, "--config", "c.yaml", "--seed",
                                                     "2", "train.epochs=3", "--resume"]
    monkeypatch.setattr(sys, "argv", [f"/venv/bin/{prog}", "--help"])
    with pytest.raises(SystemExit):
        COMMANDS["asl-train"]()
    assert capsys.readouterr().out.startswith(f"usage: {prog} ")


@pytest.mark.parametrize("script", ["train_tf.py", "export_tflite.py"])
def test_scripts_run_from_any_folder(script, tmp_path):
    """`python train_tf.py` / `python export_tflite.py` themselves call `main`."""
    run = subprocess.run([sys.executable, os.path.join(REPO, script), "--help"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: ")


def test_train_config_error_exits_2(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("base: gone.yaml\n")
    assert train_tf.main(["--config", str(bad)]) == 2
    assert "c.yaml: base file" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["--config", "c.yaml", "--checkpoints", "a.weights.h5",
                                       "--out", "o", "--check-clips", "-1"]])
def test_export_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as e:
        export_tflite.main(argv)
    assert e.value.code == 2


INSTALLED = {name: os.path.join(os.path.dirname(sys.executable), name) for name in COMMANDS}


@pytest.mark.skipif(not all(map(os.path.exists, INSTALLED.values())),
                    reason="the package is not installed in this environment (pip install -e .)")
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_installed_console_scripts_run(name, tmp_path):
    """What pip put next to this interpreter (the fresh venv of .ci/run) runs from any folder."""
    run = subprocess.run([INSTALLED[name], "--help"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: ")
