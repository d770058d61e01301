"""The three notebooks run top to bottom in demo mode (DEMO = True), from a working directory
outside the repository, and leave their outputs."""

from __future__ import annotations

import json
import os
import shlex
import zipfile

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from tests.paths import REPO


def run_notebook(name, out_dir):
    """Run the notebook with its kernel in `out_dir`, where no repository path resolves."""
    nb = nbformat.read(os.path.join(REPO, "notebooks", f"{name}.ipynb"), as_version=4)
    parameters = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert parameters and "DEMO = True" in parameters[0].source
    os.environ["ASL_NOTEBOOK_OUT"] = str(out_dir)
    os.environ["ASL_KERAS_REPO"] = REPO
    os.environ["PIP_NO_INDEX"] = "1"  # their install step must work with the internet off
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(out_dir)}}).execute()
    return nb


@pytest.mark.slow
def test_notebooks_run_in_demo_mode_and_write_their_outputs(tmp_path):
    """Slow (about 75 s): each notebook runs in a kernel of its own, as a user runs it."""
    out = tmp_path / "out"
    out.mkdir()
    nb = run_notebook("train_tpu", out)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs)
    # the 1 s "session limit" stopped the run after its first step, mid-epoch...
    assert "stopped at the time limit (0.000277778 h) in epoch 1 after step 1 of " in printed
    demo = shlex.quote(os.path.join(REPO, "configs", "demo.yaml"))
    assert f"resume with: python train_tf.py --config {demo} " in printed
    # ...and the resumed session finished it: one row per epoch, both evaluated
    history = pd.read_csv(out / "checkpoints" / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert history["score"].notna().all()
    assert "done: " in printed
    assert (out / "checkpoints" / "model.weights.h5").stat().st_size > 0
    assert (out / "checkpoints" / "loss.png").stat().st_size > 0

    run_notebook("submission", out)
    with zipfile.ZipFile(out / "export" / "submission.zip") as z:
        assert sorted(z.namelist()) == ["inference_args.json", "model.tflite"]
    score = json.loads((out / "submission_score.json").read_text())
    assert score["sequences"] == 20 and score["score"] <= 1.0  # can be < 0 (insertions)

    run_notebook("explore", out)
    for png in ("statistics.png", "augmentations.png"):
        assert (out / png).stat().st_size > 10_000
