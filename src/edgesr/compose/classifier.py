"""ClassSR's patch classifier (Kong et al., CVPR 2021, Sec. 3.2, Fig. 3) and its one pass over a whole image.

Architecture: conv 3->128 (kernel 4, stride 4) + LeakyReLU 0.1, three 1x1 convs 128->128 each followed by
LeakyReLU 0.1, a 1x1 conv 128->32, global average pooling, a linear layer 32->M (M branches, 3 in
ClassSR); about 60 K parameters and 3.8 M Mult-Adds per 32x32 LR patch.

Every layer before the pooling is a convolution whose windows do not overlap (kernel = stride 4, then
1x1), so the feature map of a patch whose top-left corner is a multiple of 4 is exactly the slice of
the feature map of the whole image. :meth:`PatchClassifier.grid_logits` therefore runs the features
once over the image and averages each patch's window (an integral image: one gather for all patches);
patches not on the 4-pixel lattice (the last row and column, which end at the image edge) run through
the plain patch path. Both paths give the same logits up to float rounding (tested).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesr.complexity import count_complexity
from edgesr.compose.grid import PatchGrid

__all__ = ["FEATURE_STRIDE", "Features", "PatchClassifier"]

Features = Callable[[Tensor], Tensor]
"""The classifier's layers before the pooling: ``(B, 3, h, w)`` -> ``(B, 32, h / 4, w / 4)``."""

FEATURE_STRIDE = 4
"""The stride (and kernel) of the first convolution: the lattice on which the whole-image pass is exact."""


class PatchClassifier(nn.Module):
    """ClassSR's classifier: ``(N, 3, p, p)`` LR patches in [0, 1] -> ``(N, M)`` logits (softmax -> branch)."""

    def __init__(self, num_branches: int = 3, num_feat: int = 128, num_out_feat: int = 32) -> None:
        super().__init__()
        if num_branches < 2:
            raise ValueError(f"a classifier chooses between at least 2 branches, got {num_branches}")
        self.num_in_ch = 3
        self.features = nn.Sequential(
            nn.Conv2d(3, num_feat, FEATURE_STRIDE, FEATURE_STRIDE),
            nn.LeakyReLU(0.1),
            nn.Conv2d(num_feat, num_feat, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(num_feat, num_feat, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(num_feat, num_feat, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(num_feat, num_out_feat, 1),
        )
        self.fc = nn.Linear(num_out_feat, num_branches)

    def forward(self, patches: Tensor) -> Tensor:
        if patches.shape[-1] % FEATURE_STRIDE or patches.shape[-2] % FEATURE_STRIDE:
            raise ValueError(f"patch sides must be multiples of {FEATURE_STRIDE}, got {tuple(patches.shape[-2:])}")
        return self.fc(self.features(patches).mean(dim=(2, 3)))

    @torch.inference_mode()
    def grid_logits(self, image: Tensor, grid: PatchGrid, features: Features | None = None) -> Tensor:
        """Logits ``(N, M)`` of every patch of ``grid`` over one LR image ``(1, 3, H, W)``, row-major.

        Patches on the 4-pixel lattice share one feature pass over the image; the others run on their own.
        ``features`` runs the layers before the pooling (default: :attr:`features` in PyTorch; a compiled
        runtime's copy of them, :mod:`edgesr.compose.compiled`).
        """
        features = features or self.features
        p, k = grid.patch, FEATURE_STRIDE
        tops, lefts = (torch.from_numpy(a).to(image.device) for a in grid.tops_lefts())
        on_lattice = (tops % k == 0) & (lefts % k == 0) if p % k == 0 else torch.zeros_like(tops, dtype=torch.bool)
        pooled = torch.empty(len(grid), self.fc.in_features, device=image.device)
        if on_lattice.any():
            lattice = features(image[:, :, : grid.height // k * k, : grid.width // k * k])[0].double()
            # integral image with a zero first row and column: window sums in four gathers
            integral = F.pad(lattice.cumsum(1).cumsum(2), (1, 0, 1, 0))
            y0, x0 = tops[on_lattice] // k, lefts[on_lattice] // k
            y1, x1 = y0 + p // k, x0 + p // k
            sums = integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0] + integral[:, y0, x0]
            pooled[on_lattice] = (sums / (p // k) ** 2).T.float()
        off = (~on_lattice).nonzero().squeeze(1)
        if len(off):
            patches = torch.stack(
                [image[0, :, t : t + p, s : s + p] for t, s in zip(tops[off], lefts[off], strict=True)]
            )
            pooled[off] = features(patches).mean(dim=(2, 3))
        return self.fc(pooled)

    def mult_adds(self, grid: PatchGrid) -> int:
        """Mult-Adds of :meth:`grid_logits` on ``grid`` (:mod:`edgesr.complexity`): the feature pass over the
        lattice, the off-lattice patches on their own, the linear layer per patch."""
        k, p = FEATURE_STRIDE, grid.patch
        tops, lefts = grid.tops_lefts()
        off_lattice = int(np.count_nonzero((tops % k != 0) | (lefts % k != 0))) if p % k == 0 else len(grid)
        image = count_complexity(self.features, 1, (grid.height // k * k, grid.width // k * k)).mult_adds
        per_patch = count_complexity(self.features, 1, (p, p)).mult_adds
        linear = self.fc.in_features * self.fc.out_features
        return (image if off_lattice < len(grid) else 0) + off_lattice * per_patch + len(grid) * linear

    def route(self, patches: np.ndarray, image: np.ndarray, grid: PatchGrid) -> np.ndarray:
        """Branch index (argmax, ClassSR's test rule) of every patch of ``grid`` over a float32 ``(1, 3, H, W)``
        ``image`` (the ``patches`` are not needed: the features of the image are shared)."""
        was_training = self.training
        self.eval()
        try:
            return self.grid_logits(torch.from_numpy(image), grid).argmax(dim=1).numpy()
        finally:
            self.train(was_training)
