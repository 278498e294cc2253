"""Wall-clock latency of one forward pass, for benchmarks (paper 002: measure on the deployment runtime).

Mult-Adds and latency disagree for depthwise-heavy models (paper 004 Sec. 5.1), so the benchmarks
report both. Tests never assert these times; they are written to JSON by ``benchmarks/``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["LatencyResult", "measure_latency", "runner_median_ms"]


@dataclass(frozen=True)
class LatencyResult:
    """Summary of ``repeats`` timed forward passes of one (1, C, H, W) input."""

    median_ms: float
    mean_ms: float
    min_ms: float
    repeats: int
    threads: int
    input_hw: tuple[int, int]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_hw"] = list(self.input_hw)  # JSON has no tuples
        return data


def _synchronize(device: torch.device) -> None:
    # CUDA launches are asynchronous: without a sync the timer measures only the launch.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    model: nn.Module,
    input_hw: tuple[int, int],
    *,
    repeats: int = 10,
    warmup: int = 3,
    threads: int | None = None,
    device: str = "cpu",
) -> LatencyResult:
    """Time ``model`` on a random (1, ``model.num_in_ch``, H, W) LR input under ``torch.inference_mode``.

    ``warmup`` untimed passes come first (allocator, kernel selection). ``threads`` sets
    ``torch.set_num_threads`` for the measurement only; the previous value is restored afterwards, as
    is the model's train/eval mode. The model is moved to ``device`` (in place, like ``nn.Module.to``).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1 or None, got {threads}")
    target = torch.device(device)
    previous_threads = torch.get_num_threads()
    was_training = model.training
    model.to(target).eval()
    height, width = input_hw
    lr = torch.rand(1, int(getattr(model, "num_in_ch", 3)), height, width, device=target)
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        used_threads = torch.get_num_threads()
        times_ms: list[float] = []
        with torch.inference_mode():
            for _ in range(warmup):
                model(lr)
            _synchronize(target)
            for _ in range(repeats):
                start = time.perf_counter()
                model(lr)
                _synchronize(target)
                times_ms.append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(previous_threads)
        model.train(was_training)
    return LatencyResult(
        median_ms=statistics.median(times_ms),
        mean_ms=statistics.fmean(times_ms),
        min_ms=min(times_ms),
        repeats=repeats,
        threads=used_threads,
        input_hw=(height, width),
    )


def runner_median_ms(runner: Callable[[np.ndarray], np.ndarray], x: np.ndarray, repeats: int, warmup: int) -> float:
    """Median wall time (ms) of ``runner(x)`` on a deployment runtime (a :data:`edgesr.deploy.runtimes.Runner`),
    after ``warmup`` untimed runs."""
    for _ in range(warmup):
        runner(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner(x)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
