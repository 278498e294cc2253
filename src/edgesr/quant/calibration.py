"""Calibration data for post-training quantization: random LR training patches, drawn explicitly.

Paper 003 (Sec. 4.3) quantizes XLSR with standard post-training quantization on training data; the
patches here come from the same sampler as training (random position and one of the 8 dihedral
transforms, seeded), so the activation ranges seen in calibration are those the model was trained on.
"""

from __future__ import annotations

import numpy as np

from edgesr.data.patches import PatchSampler

__all__ = ["calibration_patches"]


def calibration_patches(
    pairs: list[tuple[str, np.ndarray, np.ndarray]], scale: int, count: int, patch: int, seed: int
) -> list[np.ndarray]:
    """``count`` float32 LR patches of shape (1, 3, ``patch``, ``patch``) in [0, 1] from (name, LR, HR) pairs."""
    if count < 1:
        raise ValueError(f"need at least one calibration patch, got {count}")
    sampler = PatchSampler([(lr, hr) for _, lr, hr in pairs], scale, patch, seed)
    lr, _ = sampler.batch(0, count)
    return [np.ascontiguousarray(lr[i : i + 1].numpy()) for i in range(count)]
