"""The patch grid of ClassSR-style inference that covers the whole image, and the overlap average.

ClassSR (Kong et al., CVPR 2021, Sec. 4.1) tests on 32x32 LR patches at stride 28 and averages the
overlaps; its code drops the right and bottom leftovers, so its output is smaller than the ground truth.
Here the last patch of every row and column ends at the image edge (it overlaps its neighbour by more),
so every LR pixel is covered and the output has the full size ``scale x (H, W)``. An image smaller
than one patch is extended by symmetric padding (MATLAB's rule, as :mod:`edgesr.deploy.tiling` pads)
and the output cropped back (:class:`~edgesr.compose.composed.ComposedModel`).

Tensor contract: patches are float32 ``(N, 3, p, p)`` in [0, 1], row-major over the grid (row ``i``,
column ``j`` is patch ``i * len(cols) + j``); their SR outputs are ``(N, 3, s p, s p)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgesr.errors import UsageError

__all__ = ["PatchGrid", "blend", "extract_patches", "patch_grid", "positions"]


def positions(length: int, patch: int, stride: int) -> np.ndarray:
    """Start of every patch along one axis: ``0, stride, 2 stride, ...`` and ``length - patch`` last.

    Needs ``length >= patch`` and ``1 <= stride <= patch``; the patches cover ``[0, length)``.
    """
    if not 1 <= stride <= patch:
        raise UsageError(f"the patch stride must be in [1, patch={patch}] to leave no gap, got {stride}")
    if length < patch:
        raise UsageError(f"an axis of {length} LR pixels is shorter than the {patch}-pixel patch; pad it first")
    regular = np.arange(0, length - patch, stride)
    return np.append(regular, length - patch).astype(np.int64)


@dataclass(frozen=True)
class PatchGrid:
    """Where the patches of one (padded) LR image of ``height`` x ``width`` sit."""

    height: int
    width: int
    patch: int
    rows: np.ndarray
    cols: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """(patch rows, patch columns)."""
        return len(self.rows), len(self.cols)

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def tops_lefts(self) -> tuple[np.ndarray, np.ndarray]:
        """Top and left LR coordinate of every patch, row-major: two ``(N,)`` arrays."""
        tops, lefts = np.meshgrid(self.rows, self.cols, indexing="ij")
        return tops.ravel(), lefts.ravel()

    def coverage(self) -> np.ndarray:
        """How many patches cover each LR pixel: ``(height, width)`` int, >= 1 everywhere."""
        return np.outer(
            _axis_coverage(self.height, self.rows, self.patch), _axis_coverage(self.width, self.cols, self.patch)
        )


def _axis_coverage(length: int, starts: np.ndarray, patch: int) -> np.ndarray:
    steps = np.zeros(length + 1, dtype=np.int64)
    np.add.at(steps, starts, 1)
    np.add.at(steps, starts + patch, -1)
    return np.cumsum(steps[:-1])


def patch_grid(height: int, width: int, patch: int, stride: int) -> PatchGrid:
    """The grid of an LR image of ``height`` x ``width`` (at least one patch on each side)."""
    return PatchGrid(height, width, patch, positions(height, patch, stride), positions(width, patch, stride))


def extract_patches(image: np.ndarray, grid: PatchGrid) -> np.ndarray:
    """float32 ``(N, 3, p, p)`` patches of a float ``(3, H, W)`` image, row-major, in one gather."""
    if image.shape[1:] != (grid.height, grid.width):
        raise ValueError(f"the image is {image.shape[1:]} but the grid was made for {(grid.height, grid.width)}")
    windows = np.lib.stride_tricks.sliding_window_view(image, (grid.patch, grid.patch), axis=(1, 2))
    picked = windows[:, grid.rows[:, None], grid.cols[None, :]]  # (3, rows, cols, p, p): one gather, no strip copies
    return np.ascontiguousarray(picked.transpose(1, 2, 0, 3, 4).reshape(-1, 3, grid.patch, grid.patch))


def blend(outputs: np.ndarray, grid: PatchGrid, scale: int) -> np.ndarray:
    """Average of overlapping SR patches: float32 ``(1, 3, s H, s W)``, not clamped.

    ``outputs`` are the ``(N, 3, s p, s p)`` SR patches in grid order; each output pixel is the mean of
    the patches covering it (sum divided by the count map, :meth:`PatchGrid.coverage` upscaled).
    """
    n, sp = len(grid), scale * grid.patch
    if outputs.shape != (n, 3, sp, sp):
        raise ValueError(f"expected {n} SR patches of shape (3, {sp}, {sp}) at x{scale}, got {outputs.shape}")
    total = np.zeros((3, scale * grid.height, scale * grid.width), dtype=np.float32)
    tops, lefts = grid.tops_lefts()
    for output, top, left in zip(outputs, scale * tops, scale * lefts, strict=True):
        total[:, top : top + sp, left : left + sp] += output
    count = np.repeat(np.repeat(grid.coverage(), scale, axis=0), scale, axis=1).astype(np.float32)
    return (total / count)[None]
