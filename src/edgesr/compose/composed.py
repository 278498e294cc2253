"""The composed model: a router sends every LR patch to one branch; each branch runs once on all its patches.

ClassSR (Kong et al., CVPR 2021) runs its classifier and then one branch per 32x32 patch, one patch at
a time, which is why it counts fewer FLOPs than its largest branch yet runs slower on the wall clock.
Here, for one image: the patches of the grid (:mod:`edgesr.compose.grid`, the whole image covered) are
cut in one gather, the router decides all of them at once (the classifier in one pass over the image,
:meth:`~edgesr.compose.classifier.PatchClassifier.grid_logits`), each branch gets every patch routed to
it in one :data:`~edgesr.compose.runners.BatchRunner` call (fixed-size chunks inside), and the SR patches
are put back and their overlaps averaged with the count map.

A :class:`ComposedModel` is also a :data:`~edgesr.deploy.runtimes.Runner` (float32 ``(1, 3, H, W)`` ->
``(1, 3, sH, sW)``), so ``edgesr upscale`` tiles an image through it like through any single model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edgesr.compose.grid import PatchGrid, blend, extract_patches, patch_grid
from edgesr.compose.runners import BatchRunner
from edgesr.errors import UsageError

__all__ = ["ComposedModel", "Composition", "FixedRouter", "Router", "require_two_branches"]


class Router(Protocol):
    """Chooses a branch for every patch: ``(N,)`` int indices into the composed model's branches."""

    def route(self, patches: np.ndarray, image: np.ndarray, grid: PatchGrid) -> np.ndarray: ...

    def mult_adds(self, grid: PatchGrid) -> int:
        """Mult-Adds the router spends on ``grid`` (:mod:`edgesr.complexity` conventions)."""
        ...


class FixedRouter:
    """Every patch to branch ``index``: the branch alone, tiled exactly as the composed model tiles."""

    def __init__(self, index: int) -> None:
        self.index = index

    def route(self, patches: np.ndarray, image: np.ndarray, grid: PatchGrid) -> np.ndarray:
        return np.full(len(grid), self.index, dtype=np.int64)

    def mult_adds(self, grid: PatchGrid) -> int:
        return 0


@dataclass(frozen=True)
class Composition:
    """One composed image: the float SR ``(1, 3, sH, sW)`` (not clamped), the grid and each patch's branch."""

    sr: np.ndarray
    grid: PatchGrid
    routes: np.ndarray
    """``(N,)`` branch index of every patch, row-major over the grid"""

    def histogram(self, num_branches: int) -> list[int]:
        """Patches per branch."""
        return np.bincount(self.routes, minlength=num_branches).tolist()


def require_two_branches(count: int) -> None:
    """UsageError unless there are at least two branches to choose from."""
    if count < 2:
        raise UsageError(
            f"a composed model needs at least two branches, got {count}; list models in compose.branches "
            "(e.g. [espcn, xlsr, fgnas_S_x2]) or add search sizes M and L (profiles/full.yaml)"
        )


class ComposedModel:
    """``branches`` (cheapest first or not) behind one ``router``; LR patches of ``patch`` at ``stride``."""

    def __init__(
        self, branches: Sequence[BatchRunner], router: Router, scale: int, patch: int = 32, stride: int = 28
    ) -> None:
        require_two_branches(len(branches))
        self.branches, self.router = list(branches), router
        self.scale, self.patch, self.stride = scale, patch, stride

    def compose(self, image: np.ndarray) -> Composition:
        """The composed SR of a float32 ``(1, 3, H, W)`` LR image of at least ``patch`` x ``patch``."""
        _, _, height, width = image.shape
        grid = patch_grid(height, width, self.patch, self.stride)
        patches = extract_patches(image[0], grid)
        routes = np.asarray(self.router.route(patches, image, grid), dtype=np.int64)
        if routes.shape != (len(grid),) or routes.min() < 0 or routes.max() >= len(self.branches):
            raise ValueError(
                f"the router returned {routes.shape} indices in [{routes.min()}, {routes.max()}] for "
                f"{len(grid)} patches and {len(self.branches)} branches"
            )
        sp = self.scale * self.patch
        outputs = np.empty((len(grid), 3, sp, sp), dtype=np.float32)
        for index, branch in enumerate(self.branches):
            chosen = np.flatnonzero(routes == index)
            if len(chosen):
                outputs[chosen] = branch(patches[chosen])
        return Composition(sr=blend(outputs, grid, self.scale), grid=grid, routes=routes)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The :data:`~edgesr.deploy.runtimes.Runner` surface; an image under one patch is padded symmetrically."""
        _, _, height, width = image.shape
        pad_h, pad_w = max(0, self.patch - height), max(0, self.patch - width)
        if pad_h or pad_w:
            padded = np.pad(image, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="symmetric")
            return self.compose(padded).sr[:, :, : self.scale * height, : self.scale * width]
        return self.compose(image).sr
