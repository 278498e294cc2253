"""The bicubic reference row of every SR table: MATLAB ``imresize`` down, then up, scored on Y.

Protocol (DESIGN.md, "Data conventions"; the scripts behind SRCNN/VDSR/EDSR tables): HR mod-cropped to
a multiple of s, ``LR = imresize(HR, 1/s)`` and ``SR = imresize(LR, s)``, both uint8 MATLAB bicubic,
PSNR and SSIM on the BT.601 Y channel with s pixels cropped from each border. This reproduces the
published bicubic numbers (Set5 x2 33.66 dB / 0.9299), which makes it the check that the LR pipeline and
the metrics follow the convention.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesr.data.imresize import imresize, modcrop
from edgesr.data.sources import folder_images
from edgesr.metrics import mean_psnr, psnr_y, ssim_y

__all__ = ["bicubic_scores", "bicubic_upscale"]


def bicubic_upscale(lr: np.ndarray, scale: int) -> np.ndarray:
    """Upscale a uint8 (h, w, 3) image by an integer ``scale`` with MATLAB bicubic; (s*h, s*w, 3) uint8."""
    if lr.dtype != np.uint8:
        raise TypeError(f"bicubic_upscale takes a uint8 image, got {lr.dtype}")
    if not (isinstance(scale, int | np.integer) and scale >= 1):
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    return imresize(lr, scale)


def bicubic_scores(hr_dir: Path, scale: int) -> dict[str, float | int]:
    """Mean PSNR-Y / SSIM-Y of bicubic x``scale`` over the HR images in ``hr_dir``.

    Returns ``{"psnr": dB, "ssim": ..., "images": N}``; unreadable files are skipped, one line each on stderr.
    """
    psnrs, ssims = [], []
    for _, image in folder_images(Path(hr_dir)):
        hr = modcrop(image, scale)
        sr = bicubic_upscale(imresize(hr, 1 / scale), scale)
        psnrs.append(psnr_y(sr, hr, crop_border=scale))
        ssims.append(ssim_y(sr, hr, crop_border=scale))
    return {"psnr": mean_psnr(psnrs), "ssim": float(np.mean(ssims)), "images": len(psnrs)}
