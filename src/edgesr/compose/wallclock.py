"""Wall-clock of the composed model against its largest branch alone on the whole frame, same images, same run.

ClassSR counts fewer FLOPs than its largest branch yet runs slower, because it runs one patch at a
time. The comparison that matters on a device: the composed model (router included) on a whole image,
against the largest branch run once on the whole frame, both on the same runtime and thread count,
interleaved image by image so that both see the same machine state. Reported per image as the median
of ``repeats`` timed runs after ``warmup`` untimed ones (the first calls of a compiled runtime include
its set-up).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from edgesr.data.images import as_input
from edgesr.deploy.runtimes import Runner

__all__ = ["compare_wallclock", "median_seconds"]


def median_seconds(run: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``run`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def compare_wallclock(
    composed: Runner, largest: Runner, images: Sequence[np.ndarray], repeats: int, warmup: int = 1
) -> dict[str, object]:
    """Per uint8 LR image: median seconds of ``composed`` and ``largest`` (both whole-image
    :data:`~edgesr.deploy.runtimes.Runner`\\ s) and their ratio; the median ratio over the images."""
    rows = []
    for lr in images:
        image = as_input(lr)
        seconds = {
            name: median_seconds(partial(run, image), repeats, warmup)
            for name, run in (("composed_s", composed), ("largest_s", largest))
        }
        rows.append({"lr_hw": list(lr.shape[:2]), **seconds, "ratio": seconds["composed_s"] / seconds["largest_s"]})
    return {"images": rows, "median_ratio": float(np.median([row["ratio"] for row in rows]))}
