"""What the notebooks in `notebooks/` share: paths, the demo data set and the training call.

The notebooks find the repository in `ASL_KERAS_REPO` (default `..`: Jupyter starts them in
`notebooks/`), reach its files by absolute paths whatever the working directory, and write their
results to `ASL_NOTEBOOK_OUT` (default `notebook_out/` in the repository).
"""

from __future__ import annotations

import configparser
import importlib.metadata
import os
import subprocess
import sys

from packaging.requirements import Requirement

# The demo's small synthetic set, generated and converted once into the output folder and
# shared by the three notebooks (smaller than configs/demo.yaml's, so CI runs them quickly).
_DEMO_SET = "{train: 400, supplemental: 100, participants: 8, per_file: 100, seed: 0}"


class MissingRequirements(RuntimeError):
    """The environment lacks packages the project needs, and no wheel folder supplies them."""


def requirements(repo: str) -> list[Requirement]:
    """`install_requires` of the repository's setup.cfg (TensorFlow is not among them)."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(repo, "setup.cfg"))
    lines = cfg.get("options", "install_requires").splitlines()
    return [Requirement(line.split("#")[0].strip()) for line in lines
            if line.split("#")[0].strip()]


def unmet(reqs: list[Requirement]) -> list[str]:
    """Each requirement that no installed distribution satisfies, with what is installed."""
    problems = []
    for req in reqs:
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{req} (not installed)")
            continue
        if not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req} (installed: {version})")
    return problems


def install(repo: str, wheels: str | None = None) -> None:
    """Make the repository importable with what the environment has, without a package index.

    Kaggle notebooks often run with the internet off, on the image's own TensorFlow and Keras,
    and a dataset (the attached repository) is read-only. So the code runs in place (the
    repository goes first on `sys.path`) and nothing is built; the runtime requirements are
    checked against the installed distributions, and those missing are installed with
    `pip install --no-index --find-links WHEELS` from `wheels`, a folder of wheel files (e.g. a
    dataset made once with `pip download -d wheels rapidfuzz ai-edge-litert`). Without such a
    folder a missing requirement raises MissingRequirements naming each one. TensorFlow itself
    is checked by importing `asl_keras.runtime` (the message names what to install).
    """
    missing = unmet(requirements(repo))
    if missing and wheels:
        names = [item.split(" (")[0] for item in missing]
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "--no-index",
                               "--find-links", wheels, *names])
        missing = unmet(requirements(repo))
    if missing:
        raise MissingRequirements(
            "this environment lacks " + ", ".join(missing) + "; attach a folder of wheels "
            "(made where the internet is on: pip download -d wheels " + " ".join(
                f"'{item.split(' (')[0]}'" for item in missing) + ") and pass it as WHEELS")
    if repo not in sys.path:
        sys.path.insert(0, repo)
    import asl_keras.runtime  # noqa: F401  (fails here, naming the extra, without TensorFlow)


def setup(repo: str) -> str:
    """The (created) absolute output folder: `ASL_NOTEBOOK_OUT`, else `notebook_out/` in
    `repo`. The working directory stays as it is; repository files go through `in_repo`."""
    out = os.path.abspath(os.environ.get("ASL_NOTEBOOK_OUT", os.path.join(repo, "notebook_out")))
    os.makedirs(out, exist_ok=True)
    return out


def in_repo(repo: str, path: str) -> str:
    """`path` as a notebook parameter gives it: relative to the repository root `repo`, unless
    absolute or a URL (`gs://...`), which stay as they are."""
    return path if "://" in path else os.path.join(repo, path)


def demo_data(out_dir: str) -> list[str]:
    """Config overrides that put the demo's synthetic data and records under `out_dir`."""
    return [f"data.kaggle_dir={out_dir}/kaggle", f"data.records={out_dir}/records",
            f"data.synthetic={_DEMO_SET}"]


def train(config_path: str, overrides: list[str], fold: int | None = None,
          seed: int | None = None, resume: bool = False, strategy: str | None = None) -> int:
    """`python train_tf.py --config ... [--fold] [--seed] [--resume] [--strategy] overrides`
    in-process; returns its exit code (`asl_keras.training.run.EXIT_*`)."""
    from asl_keras.training.run import main_train, parse_args

    flags = {"--fold": fold, "--seed": seed, "--strategy": strategy}
    argv = ["--config", config_path, *[w for flag, value in flags.items() if value is not None
                                       for w in (flag, str(value))]]
    return main_train(parse_args([*argv, *(["--resume"] if resume else []), *overrides]))
