"""Shared fixtures: the shipped benchmark sets, telemetry off, one Prefect test server per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "data" / "benchmarks"

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))


def benchmark_set(name: str) -> Path:
    """HR folder of a benchmark set shipped with the project (``data/benchmarks``: Set5, Set14)."""
    return BENCHMARKS / name / "HR"


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (SQLite) for the whole session: its start-up migrates a database,
    which is slow on 2 cores (DESIGN.md, MLOps)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
