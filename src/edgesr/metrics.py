"""Image-quality metrics with the SR community's conventions (BasicSR / MATLAB).

PSNR and SSIM are computed on the Y channel of YCbCr (ITU-R BT.601, studio swing):
``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` for RGB in [0, 1], after cropping ``crop_border``
pixels (the scale factor) from every side. SSIM follows Wang et al. 2004 with an 11x11 Gaussian
window, sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, "valid" filtering, as BasicSR's ``calculate_ssim``.
Inputs are uint8 RGB arrays of shape (H, W, 3).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy.ndimage import correlate1d

__all__ = ["mean_psnr", "psnr_y", "rgb_to_y", "ssim_y"]

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """Y channel (float64, range [16, 235]) of a uint8 RGB image (H, W, 3)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {image.shape}")
    return image.astype(np.float64) @ _Y_WEIGHTS + 16.0


def _check_pair(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape != hr.shape:
        raise ValueError(f"SR and HR shapes differ: {sr.shape} vs {hr.shape}")
    if sr.dtype != np.uint8 or hr.dtype != np.uint8:
        raise TypeError(f"metrics take uint8 images, got {sr.dtype} and {hr.dtype}")
    y_sr, y_hr = rgb_to_y(sr), rgb_to_y(hr)
    if crop_border > 0:
        y_sr = y_sr[crop_border:-crop_border, crop_border:-crop_border]
        y_hr = y_hr[crop_border:-crop_border, crop_border:-crop_border]
    return y_sr, y_hr


def psnr_y(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> float:
    """PSNR in dB on Y after cropping ``crop_border`` pixels; ``inf`` for identical images."""
    y_sr, y_hr = _check_pair(sr, hr, crop_border)
    mse = np.mean((y_sr - y_hr) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def mean_psnr(scores: Iterable[float]) -> float:
    """The PSNR of a set of images as SR tables report it: the mean of the per-image PSNRs (dB).

    Not the PSNR of the pooled MSE, which weighs the worst images differently.
    """
    return float(np.mean(list(scores)))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation with a 1-D window along both axes."""
    half = len(window) // 2
    out = correlate1d(correlate1d(image, window, axis=0, mode="constant"), window, axis=1, mode="constant")
    return out[half:-half, half:-half]


def ssim_y(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> float:
    """Mean SSIM (Wang et al. 2004, Eq. 13) on Y after cropping ``crop_border`` pixels."""
    y_sr, y_hr = _check_pair(sr, hr, crop_border)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    window = _gaussian_window()
    mu1, mu2 = _filter_valid(y_sr, window), _filter_valid(y_hr, window)
    sigma1 = _filter_valid(y_sr**2, window) - mu1**2
    sigma2 = _filter_valid(y_hr**2, window) - mu2**2
    sigma12 = _filter_valid(y_sr * y_hr, window) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * sigma12 + c2)) / ((mu1**2 + mu2**2 + c1) * (sigma1 + sigma2 + c2))
    return float(ssim_map.mean())
