"""A fresh smoke-profile DVC project (this checkout's code, the shipped benchmark sets, dvc.yaml), and a
way to run commands in it with this environment's tools first on the PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from edgesr.config import Params, load_params, write_params

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_in(cwd: Path, *args: str) -> str:
    """Run a command in ``cwd`` (no MLFLOW_TRACKING_URI: the project's own sqlite registry); its stdout."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def make_smoke_project(root: Path) -> Path:
    """``root`` made a fresh clone: code, shipped benchmark sets, dvc.yaml and the smoke profile's params."""
    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(ROOT / "data" / "benchmarks", root / "data" / "benchmarks")
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    write_params(load_params(ROOT / "params.yaml", "smoke"), root / "params.yaml")
    run_in(root, "git", "init", "-q")
    run_in(root, "dvc", "init", "-q")
    run_in(root, "dvc", "config", "core.analytics", "false")
    return root


def lean(params: Params) -> Params:
    """``params`` with the zoo cut to the models the deploy and compose stages use and the search to the size
    ``deploy.default_model`` comes from (S): a pipeline of every stage kind in about 60 % of the smoke profile's
    time (183 against 299 s on a 2-core AMD EPYC), for tests about how a pipeline is run rather than what it makes."""
    used = set(params.deploy.models) | set(params.compose.branches)
    return params.model_copy(
        update={
            "models": {name: model for name, model in params.models.items() if name in used},
            "search": params.search.model_copy(update={"sizes": {"S": params.search.sizes["S"]}}),
        }
    )
