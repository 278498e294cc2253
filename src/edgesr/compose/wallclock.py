"""Wall-clock of the composed model against its largest branch alone on the whole frame, same images, same run.

ClassSR counts fewer FLOPs than its largest branch yet runs slower, because it runs one patch at a
time. The comparison that matters on a device: the composed model (router included) on a whole image,
against the largest branch run once on the whole frame, both on the same runtime and thread count,
alternating run by run so that both see the same machine state. Reported per image as the median of
``repeats`` timed runs after ``warmup`` untimed ones (the first calls of a compiled runtime include its
set-up).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from edgesr.data.images import as_input
from edgesr.deploy.runtimes import Runner

__all__ = ["compare_wallclock", "seconds"]


def seconds(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def compare_wallclock(
    composed: Runner, largest: Runner, images: Sequence[np.ndarray], repeats: int, warmup: int = 1
) -> dict[str, object]:
    """Per uint8 LR image: median seconds of ``composed`` and ``largest`` (both whole-image
    :data:`~edgesr.deploy.runtimes.Runner`\\ s) over ``repeats`` alternating runs, and their ratio; the median
    ratio over the images. Alternating the two makes both see the same load on a shared machine."""
    rows = []
    for lr in images:
        runs = [partial(composed, as_input(lr)), partial(largest, as_input(lr))]
        for _ in range(warmup):
            for run in runs:
                run()
        times = np.array([[seconds(run) for run in runs] for _ in range(repeats)])
        composed_s, largest_s = np.median(times, axis=0).tolist()
        rows.append(
            {
                "lr_hw": list(lr.shape[:2]),
                "composed_s": composed_s,
                "largest_s": largest_s,
                "ratio": composed_s / largest_s,
            }
        )
    return {"images": rows, "median_ratio": float(np.median([row["ratio"] for row in rows]))}
