"""How much worse a composed image is where patches of different branches meet: the seam check.

Where two neighbouring patches went to different branches, their overlap averages two different
networks and each network sees the patch border without its real context; a visible seam would show
as a larger error there. :func:`seam_error` measures the mean absolute Y error (8-bit levels) against
the HR image in those mixed zones (HR pixels covered by patches of at least two branches) and in the
rest of the image; the ratio is the seam's cost (1 = no seam).
"""

from __future__ import annotations

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


def seam_error(sr: np.ndarray, hr: np.ndarray, grid: PatchGrid, routes: np.ndarray, scale: int) -> dict[str, float]:
    """Mean |Y error| (levels) of uint8 ``sr`` vs ``hr`` (sH, sW, 3) in the mixed zones and elsewhere.

    Returns ``mixed_mae``, ``other_mae``, ``ratio`` (mixed / other) and ``mixed_fraction`` of the pixels;
    the MAEs are NaN where a zone is empty.
    """
    zone = mixed_zone(grid, routes, scale)
    error = np.abs(rgb_to_y(sr) - rgb_to_y(hr))
    mixed = float(error[zone].mean()) if zone.any() else float("nan")
    other = float(error[~zone].mean()) if not zone.all() else float("nan")
    return {"mixed_mae": mixed, "other_mae": other, "ratio": mixed / other, "mixed_fraction": float(zone.mean())}
