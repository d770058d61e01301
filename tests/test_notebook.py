"""The notebooks' install step: offline, on what the environment has (asl_keras/notebook.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from asl_keras import notebook
from tests.paths import REPO


def parameters_and_install_cells(name: str) -> str:
    """The code of the notebook's parameters cell and of its cell that calls
    `notebook.install`."""
    with open(os.path.join(REPO, "notebooks", f"{name}.ipynb"), encoding="utf-8") as f:
        code = [(c["metadata"], "".join(c["source"])) for c in json.load(f)["cells"]
                if c["cell_type"] == "code"]
    parameters = next(src for meta, src in code if "parameters" in meta.get("tags", []))
    return parameters + "\n" + next(src for _, src in code if "notebook.install(" in src)


def test_requirements_are_setup_cfg_install_requires_without_tensorflow():
    names = {r.name for r in notebook.requirements(REPO)}
    assert {"keras", "rapidfuzz", "ai-edge-litert"} <= names
    assert not any(n.startswith("tensorflow") for n in names)


def test_the_submission_install_step_needs_no_package_index(tmp_path):
    """The cells as the notebook has them, in a new interpreter outside the repository, with
    pip forbidden to use an index: on an environment that has the requirements it succeeds, the
    code comes from the repository and the parameters' paths lead into it."""
    script = "\n".join([parameters_and_install_cells("submission"),
                        "import asl_keras; print('CONFIG', CONFIG)",
                        "print('FROM', asl_keras.__file__)"])
    env = {**os.environ, "PIP_NO_INDEX": "1", "ASL_KERAS_REPO": REPO,
           "ASL_NOTEBOOK_OUT": str(tmp_path / "out")}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    origin = done.stdout.split("FROM ")[-1].strip()
    assert origin == os.path.join(REPO, "asl_keras", "__init__.py")
    assert f"CONFIG {os.path.join(REPO, 'configs', 'cfg_2.yaml')}\n" in done.stdout


def test_a_missing_requirement_is_named_with_the_fix(monkeypatch):
    monkeypatch.setattr(notebook, "requirements", lambda repo: [
        Requirement("asl-keras-no-such-package>=1"), Requirement("numpy<1"),
        Requirement("keras>=3")])
    with pytest.raises(notebook.MissingRequirements) as err:
        notebook.install(REPO)
    text = str(err.value)
    assert "asl-keras-no-such-package>=1 (not installed)" in text
    assert "numpy<1 (installed: " in text and "keras>=3" not in text
    assert "pip download -d wheels 'asl-keras-no-such-package>=1' 'numpy<1'" in text


def test_missing_requirements_come_from_the_wheel_folder_without_an_index(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(notebook, "requirements",
                        lambda repo: [Requirement("asl-keras-no-such-package>=1")])
    monkeypatch.setattr(notebook.subprocess, "check_call", calls.append)
    with pytest.raises(notebook.MissingRequirements):  # the fake wheel did not install it
        notebook.install(REPO, wheels=str(tmp_path))
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links",
                      str(tmp_path), "asl-keras-no-such-package>=1"]]


def test_setup_leaves_the_working_directory_alone(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASL_NOTEBOOK_OUT", "relative/out")
    out = notebook.setup(REPO)
    assert os.getcwd() == str(tmp_path)
    assert out == str(tmp_path / "relative" / "out") and os.path.isdir(out)
    monkeypatch.delenv("ASL_NOTEBOOK_OUT")
    repo = str(tmp_path / "repo")
    assert notebook.setup(repo) == os.path.join(repo, "notebook_out")
    assert os.getcwd() == str(tmp_path)


def test_notebook_parameters_are_relative_to_the_repository(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert notebook.in_repo(REPO, "configs/demo.yaml") == os.path.join(REPO, "configs",
                                                                       "demo.yaml")
    assert notebook.in_repo(REPO, "/kaggle/input/x") == "/kaggle/input/x"
    assert notebook.in_repo(REPO, "gs://bucket/records") == "gs://bucket/records"
