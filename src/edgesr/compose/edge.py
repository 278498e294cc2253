"""ARM's training-free router (Chen et al., "ARM: Any-Time Super-Resolution Method", ECCV 2022, Sec. 3).

ARM routes each LR patch without a classifier: an edge score says how much detail the patch holds, a
lookup table built once from training patches says what PSNR each branch reaches on patches of that
score, and a run-time knob ``eta`` trades quality against cost:

    branch(patch) = argmax_b  PSNR_b(bin(score(patch))) - eta * cost_b / cost_max

- Edge score: mean absolute 4-neighbour Laplacian of the patch's Y channel (BT.601, 8-bit levels) over
  the patch interior (no padding, so the score depends on the patch alone and training patches and
  test patches are scored alike).
- Table: ``bins`` equal-count bins of the training patches' scores; per bin and branch the PSNR-Y of
  the bin's mean squared error (the branch's rounded output against the HR patches), as a set's PSNR is
  computed. Averaging per-patch PSNR in dB instead would let a flat patch a branch gets exactly right
  (an infinite, or capped, PSNR) outweigh the rest of its bin; the mean MSE is floored at 1e-3 levels^2.
- Cost: each branch's Mult-Adds per patch relative to the largest branch, so ``eta`` is the PSNR in dB
  worth the whole cost of the largest branch; ``eta = 0`` picks the best expected PSNR, a large ``eta``
  the cheapest branch. Sweeping ``eta`` traces the PSNR vs Mult-Adds curve.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgesr.compose.grid import PatchGrid
from edgesr.compose.runners import BatchRunner

__all__ = ["EdgeRouter", "EdgeTable", "build_edge_table", "edge_scores", "patch_mse", "table_from_patches"]

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float32)  # BT.601 on RGB in [0, 1]
_MIN_MSE = 1e-3


def _luma(patches: np.ndarray) -> np.ndarray:
    """Y in 8-bit levels of float ``(N, 3, h, w)`` RGB in [0, 1]: ``(N, h, w)`` float32."""
    return np.einsum("nchw,c->nhw", patches, _Y_WEIGHTS) + np.float32(16.0)


def edge_scores(patches: np.ndarray) -> np.ndarray:
    """Mean |4-neighbour Laplacian| of Y over the interior of each float ``(N, 3, p, p)`` patch: ``(N,)``."""
    y = _luma(patches)
    laplacian = y[:, :-2, 1:-1] + y[:, 2:, 1:-1] + y[:, 1:-1, :-2] + y[:, 1:-1, 2:] - 4 * y[:, 1:-1, 1:-1]
    return np.abs(laplacian).mean(axis=(1, 2))


def patch_mse(sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """Y MSE (levels^2) of each float SR patch ``(N, 3, h, w)``, rounded to 8 bit, against its uint8 HR patch."""
    rounded = np.round(np.clip(sr, 0.0, 1.0) * 255.0) / 255.0
    error = _luma(rounded.astype(np.float32)) - _luma(hr.astype(np.float32) / np.float32(255.0))
    return (error.astype(np.float64) ** 2).mean(axis=(1, 2))


@dataclass(frozen=True)
class EdgeTable:
    """Edge score -> expected PSNR-Y of every branch, and the branches' relative costs."""

    edges: list[float]
    """inner bin edges (ascending): bin ``k`` holds scores in ``[edges[k-1], edges[k])``"""
    psnr: list[list[float]]
    """``psnr[bin][branch]``: PSNR-Y of the branch's mean squared error over the training patches of the bin"""
    costs: list[float]
    """Mult-Adds per patch of each branch relative to the largest (the largest is 1)"""

    def as_dict(self) -> dict[str, list]:
        return asdict(self)

    def expected_psnr(self, scores: np.ndarray) -> np.ndarray:
        """``(N, M)`` expected PSNR of every branch for patches of edge ``scores``."""
        return np.asarray(self.psnr)[np.searchsorted(np.asarray(self.edges), scores, side="right")]


def build_edge_table(scores: np.ndarray, mse: np.ndarray, costs: np.ndarray, bins: int) -> EdgeTable:
    """The table of ``(K,)`` training patch scores and their ``(K, M)`` per-branch Y MSEs in ``bins`` equal-count bins.

    Bins that quantile ties would leave empty are merged; ``costs`` are Mult-Adds per patch of each branch.
    """
    if len(scores) < bins:
        raise ValueError(f"{len(scores)} training patches cannot fill {bins} edge bins; lower compose.edge.bins")
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, bins + 1)[1:-1]))
    which = np.searchsorted(edges, scores, side="right")
    kept = [k for k in range(len(edges) + 1) if (which == k).any()]
    binned = np.maximum(np.stack([mse[which == k].mean(axis=0) for k in kept]), _MIN_MSE)
    table = (10.0 * np.log10(255.0**2 / binned)).tolist()
    edges = edges[[k - 1 for k in kept[1:]]]  # the left edge of every non-empty bin but the first
    relative = np.asarray(costs, dtype=np.float64) / float(np.max(costs))
    return EdgeTable(edges=edges.tolist(), psnr=table, costs=relative.tolist())


class EdgeRouter:
    """Routes each patch to ``argmax_b PSNR_b(score) - eta * cost_b`` (ARM, Chen et al. 2022)."""

    def __init__(self, table: EdgeTable, eta: float) -> None:
        if eta < 0:
            raise ValueError(f"eta trades PSNR for cost and must be >= 0, got {eta}")
        self.table, self.eta = table, eta

    def route(self, patches: np.ndarray, image: np.ndarray, grid: PatchGrid) -> np.ndarray:
        """Branch index of each of the ``(N, 3, p, p)`` patches (``image`` and ``grid`` are not needed)."""
        gain = self.table.expected_psnr(edge_scores(patches)) - self.eta * np.asarray(self.table.costs)
        return gain.argmax(axis=1)

    def mult_adds(self, grid: PatchGrid) -> int:
        """0: the edge score is a Laplacian, elementwise ops only."""
        return 0


def table_from_patches(
    lr: np.ndarray, hr: np.ndarray, branches: list[BatchRunner], costs: list[int], bins: int
) -> EdgeTable:
    """The table of LR training patches ``(K, 3, p, p)`` (float in [0, 1]) and their HR patches (uint8,
    ``(K, 3, s p, s p)``), each branch run on all of them in one batched call."""
    mse = np.stack([patch_mse(branch(lr), hr) for branch in branches], axis=1)
    return build_edge_table(edge_scores(lr), mse, np.asarray(costs), bins)
