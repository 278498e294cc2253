"""Prefect 3 flow: run the DVC pipeline stage by stage, under one parent MLflow run.

Each DVC stage is one Prefect task running ``dvc repro --single-item <stage>``, strictly one at a
time (DVC holds a repository lock, so two DVC commands never run together). The flow opens a
parent MLflow run and hands its id to the stages through ``EDGESR_PARENT_RUN_ID``; each stage's
run nests under it, so one pipeline execution reads as one group in ``mlflow ui``. When the
``register`` stage ran (the deployed models changed), the flow then attempts to promote each new
candidate through the quality gates (:func:`edgesr.registry.retraining.promote_new_candidates`) and
tags the parent run with each outcome; a run where nothing changed registers and promotes nothing.

Run it with ``make flow`` (a temporary Prefect server starts on first use) or serve it on a cron
schedule against a real ``prefect server start`` (see the README).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

# Telemetry off and a patient temporary server on 2 cores, whoever starts us (DESIGN.md, MLOps).
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect import flow, get_run_logger, task  # noqa: E402

from edgesr.config import load_params  # noqa: E402
from edgesr.registry.retraining import promote_new_candidates  # noqa: E402
from edgesr.registry.store import Registry  # noqa: E402
from edgesr.tracking import PARENT_RUN_ENV, pipeline_run, tracking_uri  # noqa: E402

REGISTER_STAGE = "register"


def _dvc(project_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the DVC of this interpreter's environment in ``project_dir`` (its bin dir first on PATH)."""
    bin_dir = Path(sys.executable).parent
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run(["dvc", *args], cwd=project_dir, capture_output=True, text=True, env=full_env)


def list_stages(project_dir: Path) -> list[str]:
    """Stage names in ``dvc.yaml`` order (foreach stages expanded: ``train@fsrcnn`` ...)."""
    result = _dvc(project_dir, "stage", "list", "--name-only")
    if result.returncode != 0:
        raise RuntimeError(f"`dvc stage list` failed in {project_dir}:\n{result.stderr}")
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


@task(retries=2, retry_delay_seconds=10, task_run_name="dvc repro {stage}")
def run_stage(stage: str, project_dir: Path, parent_run_id: str) -> bool:
    """Reproduce one DVC stage if it changed; returns whether it ran. Raises on failure."""
    logger = get_run_logger()
    result = _dvc(project_dir, "repro", "--single-item", stage, env={PARENT_RUN_ENV: parent_run_id})
    for line in (result.stdout + result.stderr).splitlines():
        logger.info(line)
    if result.returncode != 0:
        raise RuntimeError(f"dvc repro {stage} failed with exit code {result.returncode}:\n{result.stderr[-4000:]}")
    return f"Running stage '{stage}'" in result.stdout


@task(task_run_name="promote new candidates")
def promote_candidates(project_dir: Path) -> dict[str, str]:
    """Attempt the promotion of every version ``register`` just made; returns model -> decision."""
    logger = get_run_logger()
    params = load_params(project_dir / "params.yaml")
    outcomes = promote_new_candidates(params, Registry(tracking_uri(project_dir)), project_dir)
    for outcome in outcomes.values():
        for line in outcome.splitlines():
            logger.info(line)
    return outcomes


@flow(name="edgesr-pipeline", log_prints=True)
def pipeline_flow(project_dir: str = ".", stages: list[str] | None = None) -> list[str]:
    """Run every DVC stage (or the given ones) in order; returns the stage names.

    The first stage, ``sources``, fingerprints the configured image folders on every run: new or edited
    images rerun ``prepare``, and the models retrain only when the prepared data changed (the scheduled
    deployment's case); otherwise every stage after it is up to date.
    """
    root = Path(project_dir).resolve()
    params = load_params(root / "params.yaml")
    names = stages or list_stages(root)
    run_name = f"pipeline {datetime.now(UTC):%Y-%m-%d %H:%M:%S}"
    with pipeline_run(params.tracking.experiment, run_name, root) as parent:
        registered = False
        for name in names:
            ran = run_stage(name, root, parent.run_id)
            registered |= ran and name == REGISTER_STAGE
            # MLflow tag keys may not hold '@': train@xlsr is tagged stage.train/xlsr
            parent.set_tags({f"stage.{name.replace('@', '/')}": "ran" if ran else "up to date"})
        if registered:
            outcomes = promote_candidates(root)
            parent.set_tags({f"promotion.{model}": text.splitlines()[0][:5000] for model, text in outcomes.items()})
    return names


if __name__ == "__main__":
    pipeline_flow()
