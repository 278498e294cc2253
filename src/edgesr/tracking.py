"""MLflow tracking service: the one place that talks to MLflow.

Library code receives a :class:`~edgesr.tracker.Tracker` (or ``None``) and calls ``log_metrics`` / ``log_artifact``;
stages open a run with :func:`stage_run`, which sets the conventions of DESIGN.md: tracking URI
``sqlite:///mlflow.db`` at the project root unless ``MLFLOW_TRACKING_URI`` is set, one experiment
per pipeline, tags ``git_commit``, ``dvc_stage``, ``params_hash``, ``data_hash``, and nesting under
the Prefect pipeline run whose id is passed in ``EDGESR_PARENT_RUN_ID``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

# Telemetry off whoever starts us (DESIGN.md, MLOps); set before mlflow reads its environment.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

import mlflow  # noqa: E402
import mlflow.onnx  # noqa: E402
import onnx  # noqa: E402
import onnxruntime  # noqa: E402

from edgesr.tracker import Tracker  # noqa: E402

__all__ = ["MlflowTracker", "PARENT_RUN_ENV", "Tracker", "pipeline_run", "stage_run", "tracking_uri"]


PARENT_RUN_ENV = "EDGESR_PARENT_RUN_ID"


def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<project root>/mlflow.db``."""
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        return uri
    return f"sqlite:///{(root or Path.cwd()).resolve() / 'mlflow.db'}"


def git_commit(root: Path | None = None) -> str:
    """The checked-out commit (``unknown`` outside git), with ``-dirty`` when tracked files changed."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def flatten(data: Mapping[str, object], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"train.loss.type": "l1", ...}`` for ``mlflow.log_params``."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


class MlflowTracker:
    """:class:`Tracker` backed by the active MLflow run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def log_onnx_model(self, model: onnx.ModelProto, name: str) -> None:
        """Log an ONNX model with ``mlflow.onnx`` (an MLflow 3 logged model named ``name`` of this run).

        The requirements are given, not inferred: inference imports the model's flavour in a subprocess.
        """
        requirements = [f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"]
        mlflow.onnx.log_model(model, name=name, pip_requirements=requirements, save_as_external_data=False)

    def log_params(self, params: Mapping[str, object]) -> None:
        flat = flatten(params)
        items = list(flat.items())
        for start in range(0, len(items), 100):  # MLflow's log_batch takes at most 100 params a call
            mlflow.log_params(dict(items[start : start + 100]))

    def set_tags(self, tags: Mapping[str, str]) -> None:
        mlflow.set_tags(dict(tags))


def _configure(experiment: str, root: Path | None) -> None:
    mlflow.set_tracking_uri(tracking_uri(root))
    mlflow.set_experiment(experiment)


@contextmanager
def stage_run(
    stage: str,
    *,
    experiment: str,
    params: Mapping[str, object],
    params_hash: str,
    data_hash: str,
    root: Path | None = None,
) -> Iterator[MlflowTracker]:
    """An MLflow run for one DVC stage, nested under the Prefect pipeline run when there is one.

    Tags: ``git_commit``, ``dvc_stage``, ``params_hash``, ``data_hash`` (DESIGN.md, MLOps).
    """
    _configure(experiment, root)
    parent = os.environ.get(PARENT_RUN_ENV) or None
    tags = {
        "git_commit": git_commit(root),
        "dvc_stage": stage,
        "params_hash": params_hash,
        "data_hash": data_hash,
    }
    with mlflow.start_run(run_name=stage, parent_run_id=parent, tags=tags) as run:
        tracker = MlflowTracker(run.info.run_id)
        tracker.log_params(params)
        yield tracker


@contextmanager
def pipeline_run(experiment: str, run_name: str, root: Path | None = None) -> Iterator[MlflowTracker]:
    """The parent run of one pipeline execution; its ``run_id`` goes to stages in :data:`PARENT_RUN_ENV`."""
    _configure(experiment, root)
    with mlflow.start_run(run_name=run_name, tags={"git_commit": git_commit(root), "kind": "pipeline"}) as run:
        yield MlflowTracker(run.info.run_id)
