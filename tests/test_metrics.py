"""PSNR-Y / SSIM-Y (BT.601 Y, BasicSR conventions) on values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgesr.metrics import mean_psnr, psnr_y, rgb_to_y, ssim_y

# BT.601 studio-swing luma weights for RGB in [0, 1]; they sum to 219 (= 235 - 16).
_LUMA_SUM = 65.481 + 128.553 + 24.966


def _image(seed: int = 0, shape: tuple[int, int] = (32, 40)) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 200, (*shape, 3), dtype=np.uint8)


def test_y_of_white_black_and_grey() -> None:
    y = rgb_to_y(np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [128, 128, 128]]], dtype=np.uint8))
    np.testing.assert_allclose(y[0], [235.0, 16.0, 16 + 65.481, 16 + 128 / 255 * _LUMA_SUM], atol=1e-9)


def test_identical_images() -> None:
    image = _image()
    assert psnr_y(image, image, crop_border=2) == math.inf
    assert ssim_y(image, image, crop_border=2) == pytest.approx(1.0, abs=1e-12)


def test_constant_offset_psnr() -> None:
    hr = _image()
    sr = hr + np.uint8(10)  # values stay below 255: no wrap-around
    # every Y differs by 10 * 219 / 255, so MSE is that squared
    expected = 20 * math.log10(255 / (10 * _LUMA_SUM / 255))
    assert psnr_y(sr, hr, crop_border=0) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(29.4527, abs=1e-4)


def test_crop_border_ignores_the_border() -> None:
    hr = _image()
    sr = hr.copy()
    sr[:3] = 0
    sr[:, -3:] = 255
    assert psnr_y(sr, hr, crop_border=3) == math.inf
    assert psnr_y(sr, hr, crop_border=2) < 20


def test_ssim_of_flat_images_is_the_luminance_term() -> None:
    # Flat images have zero variance, so SSIM = (2 mu1 mu2 + C1) / (mu1^2 + mu2^2 + C1) (Wang et al. 2004).
    sr, hr = np.full((20, 20, 3), 100, np.uint8), np.full((20, 20, 3), 140, np.uint8)
    mu1, mu2 = 16 + 100 / 255 * _LUMA_SUM, 16 + 140 / 255 * _LUMA_SUM
    c1 = (0.01 * 255) ** 2
    assert ssim_y(sr, hr, crop_border=2) == pytest.approx((2 * mu1 * mu2 + c1) / (mu1**2 + mu2**2 + c1), rel=1e-9)


def test_bad_inputs() -> None:
    image = _image()
    with pytest.raises(ValueError, match="shapes differ"):
        psnr_y(image, image[:-1], crop_border=0)
    with pytest.raises(ValueError, match="shapes differ"):
        ssim_y(image, image[:, :-1], crop_border=0)
    with pytest.raises(TypeError, match="uint8"):
        psnr_y(image.astype(np.float32), image.astype(np.float32), crop_border=0)
    with pytest.raises(ValueError, match="RGB"):
        rgb_to_y(image[..., 0])


def test_mean_psnr_is_the_mean_of_per_image_values() -> None:
    assert mean_psnr(iter([30.0, 40.0])) == 35.0  # not the PSNR of the pooled MSE (about 32.6 dB)
