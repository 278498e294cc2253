"""Random aligned LR/HR training patches with the 8 dihedral augmentations (paper 003, Sec. 4.2).

Every batch is a pure function of ``(seed, iteration)``: which image, where the crop sits and which of
the 8 geometric transforms (4 rotations x optional flip, "with equal probability" as XLSR trains) it
gets. That makes a resumed run draw exactly the batches an uninterrupted one would, and lets each
``torchrun`` process take its own slice of one global batch without any communication.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from edgesr.errors import UsageError

__all__ = ["NUM_TRANSFORMS", "PatchDraw", "PatchSampler", "dihedral"]

#: 4 quarter-turn rotations, each with and without a left-right flip.
NUM_TRANSFORMS = 8


def dihedral(images: Tensor, transform: int) -> Tensor:
    """Apply dihedral transform ``transform`` (0..7) to the last two axes (H, W) of ``images``.

    Transform ``t`` flips left-right when ``t >= 4``, then rotates by ``t % 4`` quarter turns
    counterclockwise (``torch.rot90`` / ``np.rot90`` convention). Returns a view where possible.
    """
    if not 0 <= transform < NUM_TRANSFORMS:
        raise ValueError(f"transform must be in 0..{NUM_TRANSFORMS - 1}, got {transform}")
    if transform >= 4:
        images = images.flip(-1)
    return torch.rot90(images, transform % 4, dims=(-2, -1))


@dataclass(frozen=True)
class PatchDraw:
    """Where the patches of one global batch come from; ``top``/``left`` are LR pixel coordinates."""

    image: np.ndarray
    top: np.ndarray
    left: np.ndarray
    transform: np.ndarray


class PatchSampler:
    """Aligned random crops from images held in memory, decoded once.

    Args:
        pairs: ``(lr, hr)`` uint8 RGB arrays of shape (h, w, 3) and (scale*h, scale*w, 3).
        scale: upscaling factor s; the HR crop at ``(s*top, s*left)`` of side ``s*lr_patch`` matches the
            LR crop at ``(top, left)`` of side ``lr_patch``.
        lr_patch: LR patch side in pixels (XLSR: 32).
        seed: with the iteration number, fixes every batch.
    """

    def __init__(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]], scale: int, lr_patch: int, seed: int) -> None:
        if scale < 1 or lr_patch < 1:
            raise ValueError(f"scale and lr_patch must be >= 1, got scale={scale}, lr_patch={lr_patch}")
        if len(pairs) == 0:
            raise ValueError("PatchSampler needs at least one (LR, HR) training pair, got none")
        self.scale = scale
        self.lr_patch = lr_patch
        self.seed = seed
        too_small: list[str] = []
        for index, (lr, hr) in enumerate(pairs):
            _check_pair(index, lr, hr, scale)
            if min(lr.shape[:2]) < lr_patch:
                too_small.append(f"image {index} is {lr.shape[0]}x{lr.shape[1]} (LR, HxW)")
        if too_small:
            raise UsageError(
                f"{len(too_small)} training image(s) smaller than the {lr_patch}x{lr_patch} LR patch "
                f"(train.lr_patch): {'; '.join(too_small)}. Remove them or lower train.lr_patch."
            )
        # CHW uint8 tensors: a crop is a view, and a batch costs one stack plus one float conversion.
        self._lr = [torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))) for lr, _ in pairs]
        self._hr = [torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1))) for _, hr in pairs]
        self._lr_sizes = np.array([lr.shape[:2] for lr, _ in pairs], dtype=np.int64)

    def __len__(self) -> int:
        return len(self._lr)

    def draw(self, iteration: int, batch_size: int) -> PatchDraw:
        """Image, crop position and transform of every patch of the global batch of ``iteration``."""
        if iteration < 0 or batch_size < 1:
            raise ValueError(f"need iteration >= 0 and batch_size >= 1, got {iteration}, {batch_size}")
        rng = np.random.default_rng([self.seed, iteration])
        image = rng.integers(0, len(self), size=batch_size)
        # Every top-left corner that keeps the crop inside its image is equally likely.
        heights, widths = self._lr_sizes[image, 0], self._lr_sizes[image, 1]
        top = rng.integers(0, heights - self.lr_patch + 1)
        left = rng.integers(0, widths - self.lr_patch + 1)
        transform = rng.integers(0, NUM_TRANSFORMS, size=batch_size)
        return PatchDraw(image=image, top=top, left=left, transform=transform)

    def batch(self, iteration: int, batch_size: int, rank: int = 0, world_size: int = 1) -> tuple[Tensor, Tensor]:
        """This process's slice of the global batch of ``iteration``.

        ``batch_size`` is the global batch; rank ``r`` of ``world_size`` gets patches
        ``[r * b, (r + 1) * b)`` with ``b = batch_size / world_size``. Returns ``(lr, hr)`` float32 NCHW
        tensors in [0, 1] of shapes (b, 3, p, p) and (b, 3, s*p, s*p).
        """
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if batch_size % world_size:
            raise ValueError(
                f"the global batch_size {batch_size} must be divisible by the number of processes "
                f"({world_size}); change train.batch_size or the number of processes"
            )
        local = batch_size // world_size
        draw = self.draw(iteration, batch_size)
        chosen = slice(rank * local, (rank + 1) * local)
        p, s = self.lr_patch, self.scale
        lr_crops, hr_crops = [], []
        for index, top, left in zip(draw.image[chosen], draw.top[chosen], draw.left[chosen], strict=True):
            lr_crops.append(self._lr[index][:, top : top + p, left : left + p])
            hr_crops.append(self._hr[index][:, s * top : s * (top + p), s * left : s * (left + p)])
        lr_batch, hr_batch = torch.stack(lr_crops), torch.stack(hr_crops)
        # Patches are square, so every transform keeps the shape: transform each group in one call.
        transforms = torch.from_numpy(draw.transform[chosen])
        for transform in transforms.unique().tolist():
            members = (transforms == transform).nonzero().squeeze(1)
            lr_batch[members] = dihedral(lr_batch[members], transform)
            hr_batch[members] = dihedral(hr_batch[members], transform)
        return lr_batch.float().div_(255.0), hr_batch.float().div_(255.0)


def _check_pair(index: int, lr: np.ndarray, hr: np.ndarray, scale: int) -> None:
    for name, image in (("LR", lr), ("HR", hr)):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"training pair {index}: {name} must be a uint8 RGB array (H, W, 3), got {image.dtype} {image.shape}"
            )
    expected = (scale * lr.shape[0], scale * lr.shape[1], 3)
    if hr.shape != expected:
        raise ValueError(
            f"training pair {index}: HR shape {hr.shape} is not {scale} x LR shape {lr.shape} "
            f"(expected {expected}); mod-crop HR to a multiple of the scale before downscaling"
        )
