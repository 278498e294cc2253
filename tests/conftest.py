"""Shared fixtures: the shipped benchmark sets, telemetry off, one Prefect test server per session, fp32 on CUDA;
the slow modules collected first."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "data" / "benchmarks"

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))


def _marked_slow(module: object) -> bool:
    marks = getattr(module, "pytestmark", [])
    return any(mark.name == "slow" for mark in (marks if isinstance(marks, list) else [marks]))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules marked slow (a pipeline, real servers) first, in file order, each still in one piece:
    ``--dist loadfile`` hands the files to the workers in collection order, so the longest start at once
    instead of last, where one of them would set the wall time alone (seen: the pipeline's module last)."""
    items.sort(key=lambda item: not _marked_slow(getattr(item, "module", None)))


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


@pytest.fixture
def full_fp32_on_cuda() -> Iterator[None]:
    """For the CUDA tests that compare the GPU with the CPU in fp32: the GPU must not round to TF32.

    On Ampere and later GPUs, PyTorch's default runs cuDNN convolutions in TF32
    (``torch.backends.cudnn.conv.fp32_precision == "tf32"``). TF32 keeps 10 mantissa bits, an error of
    about 1e-3 relative, far above those comparisons' tolerances (1e-5 to 2e-4). The flags are set with the
    new API only, because mixing it with the legacy ``allow_tf32`` raises. They are restored after each test.
    """
    import torch

    saved = torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    torch.backends.cudnn.conv.fp32_precision = torch.backends.cuda.matmul.fp32_precision = "ieee"
    yield
    torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = saved
