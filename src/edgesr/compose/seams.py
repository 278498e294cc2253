"""How much worse a composed image is where patches of different branches meet: the seam check.

Where neighbouring patches went to different branches, their overlap averages two different networks
and each network sees the patch border without its real context; a visible seam would show as a
larger error there. The error of those mixed zones (HR pixels covered by patches of at least two
branches) depends on their content too (routing switches where content changes), so it is compared
with the error of each branch alone, tiled the same way, in the same zones: the blend of two branches
should be no worse than the worse of them. :func:`seam_error` reports the mean absolute Y error (8-bit
levels) of the composed image and of each branch in the mixed zones and their ratio (composed / worst
branch; <= 1: no seam).

The ratio alone cannot see a seam: an average is never further from the truth than the worse of what
it averages, so a branch 2 levels too bright meeting one 2 levels too dark passes it while a 2-level
step shows where the overlap begins. The step is measured directly: along every line where the set of
branches covering an output pixel changes (a patch border where routing switches), the mean |Y
difference| between the two neighbouring pixels, in the composed image and in each branch alone at the
same places; ``step_excess`` = composed minus the largest branch step (about 0: the border is as smooth
as the content; a seam adds its height).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgesr.compose.grid import PatchGrid
from edgesr.metrics import rgb_to_y

__all__ = ["border_steps", "coverage", "mixed_zone", "seam_error"]


def mixed_zone(grid: PatchGrid, routes: np.ndarray, scale: int) -> np.ndarray:
    """``(s H, s W)`` bool: output pixels covered by patches routed to at least two different branches."""
    lowest = np.full((grid.height, grid.width), np.iinfo(np.int64).max)
    highest = np.full((grid.height, grid.width), -1)
    p = grid.patch
    for top, left, branch in zip(*grid.tops_lefts(), routes, strict=True):
        window = (slice(top, top + p), slice(left, left + p))
        np.minimum(lowest[window], branch, out=lowest[window])
        np.maximum(highest[window], branch, out=highest[window])
    mixed = lowest != highest
    return np.repeat(np.repeat(mixed, scale, axis=0), scale, axis=1)


def coverage(grid: PatchGrid, routes: np.ndarray, scale: int) -> np.ndarray:
    """``(s H, s W)`` int: bit ``b`` set where a patch routed to branch ``b`` covers the output pixel."""
    bits = np.zeros((grid.height, grid.width), dtype=np.int64)
    p = grid.patch
    for top, left, branch in zip(*grid.tops_lefts(), routes, strict=True):
        bits[top : top + p, left : left + p] |= 1 << int(branch)
    return np.repeat(np.repeat(bits, scale, axis=0), scale, axis=1)


def border_steps(images: Sequence[np.ndarray], covered: np.ndarray) -> list[float] | None:
    """Mean |Y difference| of neighbouring pixels across every line where ``covered`` changes, for each
    uint8 (sH, sW, 3) image; None when the coverage never changes."""
    across = [covered[:, 1:] != covered[:, :-1], covered[1:, :] != covered[:-1, :]]
    if not any(border.any() for border in across):
        return None
    steps = []
    for image in images:
        y = rgb_to_y(image).astype(np.float64)
        jumps = [np.abs(np.diff(y, axis=1))[across[0]], np.abs(np.diff(y, axis=0))[across[1]]]
        steps.append(float(np.concatenate(jumps).mean()))
    return steps


def seam_error(
    sr: np.ndarray, hr: np.ndarray, alone: Sequence[np.ndarray], grid: PatchGrid, routes: np.ndarray, scale: int
) -> dict[str, object]:
    """Mean |Y error| (levels) against ``hr`` in the mixed zones of uint8 ``sr`` (sH, sW, 3) and of every
    branch's tiled output ``alone``; ``ratio`` = composed / worst branch; the steps across the borders where
    routing switches and ``step_excess`` (:func:`border_steps`); None without a mixed zone."""
    zone = mixed_zone(grid, routes, scale)
    if not zone.any():
        return {"mixed_fraction": 0.0, "mixed_mae": None, "branch_mae": None, "ratio": None, "step_excess": None}
    steps = border_steps([sr, *alone], coverage(grid, routes, scale))
    assert steps is not None, "a mixed zone has a border"
    y_hr = rgb_to_y(hr)[zone]
    mixed = float(np.abs(rgb_to_y(sr)[zone] - y_hr).mean())
    branch = [float(np.abs(rgb_to_y(image)[zone] - y_hr).mean()) for image in alone]
    return {
        "mixed_fraction": float(zone.mean()),
        "mixed_mae": mixed,
        "branch_mae": branch,
        "ratio": mixed / max(branch),
        "border_step": steps[0],
        "branch_border_step": steps[1:],
        "step_excess": steps[0] - max(steps[1:]),
    }
