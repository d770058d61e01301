"""What the notebooks in `notebooks/` share: paths, the demo data set and the training call.

The notebooks run from `notebooks/` inside the repository (or wherever `ASL_KERAS_REPO`
points) and write their results to `ASL_NOTEBOOK_OUT` (default `notebook_out/`).
"""

from __future__ import annotations

import argparse
import os

# The demo's small synthetic set, generated and converted once into the output folder and
# shared by the three notebooks (smaller than configs/demo.yaml's, so CI runs them quickly).
_DEMO_SET = "{train: 400, supplemental: 100, participants: 8, per_file: 100, seed: 0}"


def setup(repo: str) -> str:
    """Work from the repository root; returns the (created) absolute output folder."""
    os.chdir(repo)
    out = os.path.abspath(os.environ.get("ASL_NOTEBOOK_OUT", os.path.join(repo, "notebook_out")))
    os.makedirs(out, exist_ok=True)
    return out


def demo_data(out_dir: str) -> list[str]:
    """Config overrides that put the demo's synthetic data and records under `out_dir`."""
    return [f"data.kaggle_dir={out_dir}/kaggle", f"data.records={out_dir}/records",
            f"data.synthetic={_DEMO_SET}"]


def train(config_path: str, overrides: list[str], fold: int | None = None,
          seed: int | None = None, resume: bool = False) -> int:
    """`python train_tf.py --config ... [--fold] [--seed] [--resume] overrides` in-process."""
    from asl_keras.training.run import main_train

    return main_train(argparse.Namespace(config=config_path, fold=fold, seed=seed,
                                         resume=resume, strategy=None,
                                         overrides=list(overrides)))
