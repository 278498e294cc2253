"""Shared fixtures: the shared data folder, telemetry off, one Prefect test server per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))


def shared_set(name: str) -> Path:
    """HR folder of a shared benchmark set, or skip the test with the reason."""
    folder = SHARED_DATA / name / "HR"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found: the shared benchmark data is not beside this checkout")
    return folder


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (SQLite) for the whole session: its start-up migrates a database,
    which is slow on 2 cores (DESIGN.md, MLOps)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
