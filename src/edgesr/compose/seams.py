"""How much worse a composed image is where patches of different branches meet: the seam check.

Where neighbouring patches went to different branches, their overlap averages two different networks
and each network sees the patch border without its real context; a visible seam would show as a
larger error there. The error of those mixed zones (HR pixels covered by patches of at least two
branches) depends on their content too (routing switches where content changes), so it is compared
with the error of each branch alone, tiled the same way, in the same zones: the blend of two branches
should be no worse than the worse of them. :func:`seam_error` reports the mean absolute Y error (8-bit
levels) of the composed image and of each branch in the mixed zones and their ratio (composed / worst
branch; <= 1: no seam).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgesr.compose.grid import PatchGrid
from edgesr.metrics import rgb_to_y

__all__ = ["mixed_zone", "seam_error"]


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


def seam_error(
    sr: np.ndarray, hr: np.ndarray, alone: Sequence[np.ndarray], grid: PatchGrid, routes: np.ndarray, scale: int
) -> dict[str, object]:
    """Mean |Y error| (levels) against ``hr`` in the mixed zones of uint8 ``sr`` (sH, sW, 3) and of every
    branch's tiled output ``alone``; ``ratio`` = composed / worst branch (None without a mixed zone)."""
    zone = mixed_zone(grid, routes, scale)
    if not zone.any():
        return {"mixed_fraction": 0.0, "mixed_mae": None, "branch_mae": None, "ratio": None}
    y_hr = rgb_to_y(hr)[zone]
    mixed = float(np.abs(rgb_to_y(sr)[zone] - y_hr).mean())
    branch = [float(np.abs(rgb_to_y(image)[zone] - y_hr).mean()) for image in alone]
    return {
        "mixed_fraction": float(zone.mean()),
        "mixed_mae": mixed,
        "branch_mae": branch,
        "ratio": mixed / max(branch),
    }
