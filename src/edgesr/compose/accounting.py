"""Mult-Adds of a composed image, two ways side by side (DESIGN.md, ClassSR section).

Counted with :func:`edgesr.complexity.count_complexity` (convolutions and matrix products; elementwise
ops apart), for exactly what runs:

- each patch's branch on its ``p x p`` LR patch, overlaps included (a pixel covered by two patches is
  paid twice), plus the router's own count (``Router.mult_adds``: the classifier's feature pass over
  the image, its passes on the patches off the 4-pixel lattice and its linear layer per patch,
  :meth:`~edgesr.compose.classifier.PatchClassifier.mult_adds`; none for the edge router).
- ``percent_of_largest_frame``: that total against the largest branch run once on the whole frame,
  the number a deployment cares about;
- ``percent_of_largest_patches``: ClassSR's convention (Kong et al. 2021, Table 1; paper 001 Table 3),
  the same total against the largest branch run on the same overlapping patches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from torch import nn

from edgesr.complexity import count_complexity
from edgesr.compose.grid import PatchGrid

__all__ = ["ComposedCost", "branch_patch_costs", "composed_cost"]


@dataclass(frozen=True)
class ComposedCost:
    """Mult-Adds of one composed image and the two references."""

    branches: int
    router: int
    largest_frame: int
    largest_patches: int

    @property
    def total(self) -> int:
        return self.branches + self.router

    def as_dict(self) -> dict[str, float]:
        return asdict(self) | {
            "total": self.total,
            "percent_of_largest_frame": 100.0 * self.total / self.largest_frame,
            "percent_of_largest_patches": 100.0 * self.total / self.largest_patches,
        }


def branch_patch_costs(models: Sequence[nn.Module], scale: int, patch: int) -> list[int]:
    """Mult-Adds of each branch on one ``patch x patch`` LR patch."""
    return [count_complexity(model, scale, (scale * patch, scale * patch)).mult_adds for model in models]


def composed_cost(
    routes: np.ndarray, patch_costs: Sequence[int], router_cost: int, largest: nn.Module, grid: PatchGrid, scale: int
) -> ComposedCost:
    """The cost of one image whose patches went to ``routes`` (``(N,)`` branch indices); ``largest`` is the
    branch of the highest ``patch_costs``, counted on the whole ``grid.height x grid.width`` frame."""
    counts = np.bincount(routes, minlength=len(patch_costs))
    frame = count_complexity(largest, scale, (scale * grid.height, scale * grid.width)).mult_adds
    return ComposedCost(
        branches=int(np.dot(counts, patch_costs)),
        router=router_cost,
        largest_frame=frame,
        largest_patches=len(grid) * max(patch_costs),
    )
