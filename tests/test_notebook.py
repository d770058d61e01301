"""The notebooks' install step: offline, on what the environment has (asl_keras/notebook.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from asl_keras import notebook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def install_cell(name: str) -> str:
    """The code of the notebook's cell that calls `notebook.install`."""
    with open(os.path.join(ROOT, "notebooks", f"{name}.ipynb"), encoding="utf-8") as f:
        cells = json.load(f)["cells"]
    return next("".join(c["source"]) for c in cells
                if c["cell_type"] == "code" and "notebook.install(" in "".join(c["source"]))


def test_requirements_are_setup_cfg_install_requires_without_tensorflow():
    names = {r.name for r in notebook.requirements(ROOT)}
    assert {"keras", "rapidfuzz", "ai-edge-litert"} <= names
    assert not any(n.startswith("tensorflow") for n in names)


def test_the_submission_install_step_needs_no_package_index(tmp_path):
    """The cell as the notebook has it, in a new interpreter, with pip forbidden to use an
    index: on an environment that has the requirements it succeeds and the code comes from the
    repository."""
    script = "\n".join(["WHEELS = None", install_cell("submission"),
                        "import asl_keras; print('FROM', asl_keras.__file__)"])
    env = {**os.environ, "PIP_NO_INDEX": "1", "ASL_KERAS_REPO": ROOT,
           "ASL_NOTEBOOK_OUT": str(tmp_path / "out")}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    origin = done.stdout.split("FROM ")[-1].strip()
    assert origin == os.path.join(ROOT, "asl_keras", "__init__.py")


def test_a_missing_requirement_is_named_with_the_fix(monkeypatch):
    monkeypatch.setattr(notebook, "requirements", lambda repo: [
        Requirement("asl-keras-no-such-package>=1"), Requirement("numpy<1"),
        Requirement("keras>=3")])
    with pytest.raises(notebook.MissingRequirements) as err:
        notebook.install(ROOT)
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
        notebook.install(ROOT, wheels=str(tmp_path))
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links",
                      str(tmp_path), "asl-keras-no-such-package>=1"]]
