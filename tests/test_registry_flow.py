"""The Prefect flow's registration path (issue 12, item 6): after a run whose `register` stage ran, the new
candidate's promotion is attempted and recorded on the pipeline run; a run where nothing changed registers
and promotes nothing. A real DVC project (the tiny ESPCN of :mod:`tests.registry_project`), a sqlite registry.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from edgesr.registry.signing import init_keys
from edgesr.registry.store import CHAMPION, Registry

from .registry_project import MODEL, ROOT, export_tiny_model, project_params, write_stage_metrics

pytestmark = pytest.mark.slow


def _pipeline_runs(uri: str, experiment: str) -> list:
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=[experiment], output_format="list")
    return sorted((r for r in runs if r.data.tags.get("kind") == "pipeline"), key=lambda r: r.info.start_time)


def test_the_flow_promotes_what_register_made_and_nothing_when_unchanged(tmp_path, monkeypatch, prefect_harness):
    from pipelines.flow import pipeline_flow

    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = project_params(root)
    export_tiny_model(params, root)
    write_stage_metrics(params, root)
    init_keys(root / "keys")
    dvc = str(Path(sys.executable).parent / "dvc")
    for command in (["git", "init", "-q"], [dvc, "init", "-q"], [dvc, "config", "core.analytics", "false"]):
        subprocess.run(command, cwd=root, check=True, capture_output=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    assert pipeline_flow(project_dir=str(root), stages=["register"]) == ["register"]
    (first,) = _pipeline_runs(uri, params.tracking.experiment)
    assert first.data.tags["stage.register"] == "ran"
    assert first.data.tags[f"promotion.{MODEL}"] == f"{MODEL} version 1: promoted to champion"
    assert str(Registry(uri).by_alias(MODEL, CHAMPION).version) == "1"

    pipeline_flow(project_dir=str(root), stages=["register"])
    second = _pipeline_runs(uri, params.tracking.experiment)[-1]
    assert second.data.tags["stage.register"] == "up to date"
    assert not any(key.startswith("promotion.") for key in second.data.tags)
    assert str(Registry(uri).latest(MODEL).version) == "1"


def test_the_served_schedule_is_the_params_cron_unless_given(tmp_path):
    from pipelines.serve import schedule_cron

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    text = (tmp_path / "params.yaml").read_text().replace('cron: "0 3 * * *"', 'cron: "*/10 * * * *"')
    (tmp_path / "params.yaml").write_text(text)
    assert schedule_cron(tmp_path, None) == "*/10 * * * *"
    assert schedule_cron(tmp_path, "5 4 * * 1") == "5 4 * * 1"
