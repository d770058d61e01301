"""Where the repository's files are, from this file: tests read them whatever the working
directory (`python -m pytest /path/to/tests` from anywhere)."""

from __future__ import annotations

import glob
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")
FIXTURES = os.path.join(REPO, "tests", "fixtures")
REF1ST = os.path.join(FIXTURES, "ref1st")  # the 1st-place reference fixtures


def config_path(name: str) -> str:
    """The repository's `configs/<name>` (e.g. "cfg_2.yaml")."""
    return os.path.join(CONFIGS, name)


def reference_fixtures(prefix: str) -> list[str]:
    """The `<prefix>_*.npz` reference cases: the project's, plus any in the folder named by
    ASL_REF_FIXTURES."""
    dirs = [REF1ST, *filter(None, [os.environ.get("ASL_REF_FIXTURES")])]
    return sorted(p for d in dirs for p in glob.glob(os.path.join(d, f"{prefix}_*.npz")))


def checkout_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's environment) with this checkout first on PYTHONPATH, so
    that a subprocess imports this repository's `asl_keras` and `tests` whatever its working
    directory and whatever else is installed."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    return env
