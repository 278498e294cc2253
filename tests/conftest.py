"""Shared fixtures: the shipped benchmark sets, telemetry off, one Prefect test server per session, fp32 on CUDA;
the slow modules collected first."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "data" / "benchmarks"

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules marked slow (a pipeline, real servers) first, fewest tests first (an end-to-end module is a few
    long tests), then the others, most tests first; each module in one piece. ``make test`` runs ``--dist loadfile
    --no-loadscope-reorder``, so the files go to the workers in this order. pytest-xdist's own order (most tests
    first) started the pipeline's module, three tests and the longest, last, where it set the wall time alone
    (1259 s of tests at dd4afcd)."""
    modules = {item: item.getparent(pytest.Module) for item in items}
    tests_in = Counter(modules.values())

    def order(item: pytest.Item) -> tuple[bool, int]:
        module = modules[item]
        slow = module is not None and module.get_closest_marker("slow") is not None  # the module's pytestmark
        return not slow, tests_in[module] if slow else -tests_in[module]

    items.sort(key=order)


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
