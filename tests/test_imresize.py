"""MATLAB-exact bicubic imresize: against a loop-by-loop transcription of MATLAB's algorithm, and on
values that can be worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgesr.data.imresize import imresize, modcrop, resize_weights
from tests.matlab_reference import matlab_imresize


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 0.7, 2, 3, 4, 1.5])
@pytest.mark.parametrize("dtype", [np.float64, np.uint8])
def test_matches_loop_reference_on_7x9(scale: float, dtype: type) -> None:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=(7, 9)).astype(dtype)
    got = imresize(image, scale)
    want = matlab_imresize(image, scale)
    assert got.dtype == (np.uint8 if dtype == np.uint8 else np.float64)
    assert got.shape == (math.ceil(7 * scale), math.ceil(9 * scale))
    if dtype == np.uint8:
        np.testing.assert_array_equal(got, want.astype(np.uint8))
    else:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_channels_are_resized_independently() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    got = imresize(image, 1 / 2)
    assert got.shape == (6, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], imresize(image[..., c], 1 / 2))


@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 1 / 2, 2, 3])
def test_constant_image_stays_constant(scale: float) -> None:
    image = np.full((13, 11, 3), 77, dtype=np.uint8)
    np.testing.assert_array_equal(imresize(image, scale), 77)
    np.testing.assert_allclose(imresize(image.astype(np.float64) / 255, scale), 77 / 255, atol=1e-12)


def test_linear_ramp_is_resampled_at_matlab_coordinates() -> None:
    # Cubic convolution reproduces linear functions, so away from the border the output is the ramp
    # evaluated at u = x / s + (1 - 1 / s) / 2 (1-based): for s = 1/2, pixel k (0-based) -> 2k + 0.5.
    ramp = np.tile(np.arange(32, dtype=np.float64), (4, 1))
    down = imresize(ramp, 1 / 2)[0]
    np.testing.assert_allclose(down[3:-3], 2 * np.arange(3, 13) + 0.5, atol=1e-12)
    # for s = 2, pixel k -> k / 2 - 0.25
    up = imresize(ramp, 2)[0]
    np.testing.assert_allclose(up[4:-4], np.arange(4, 60) / 2 - 0.25, atol=1e-12)


def test_x2_upscale_weights_are_keys_coefficients() -> None:
    # Output pixel 6 (0-based) of a x2 upscale samples input coordinate 2.75: Keys' a = -0.5 weights for
    # distances 1.75, 0.75, 0.25, 1.25 to inputs 1..4 are -3/128, 29/128, 111/128, -9/128.
    weights = resize_weights(8, 16, 2).toarray()
    np.testing.assert_allclose(weights[6], [0, -3 / 128, 29 / 128, 111 / 128, -9 / 128, 0, 0, 0], atol=1e-15)
    np.testing.assert_allclose(resize_weights(9, 3, 1 / 3).toarray().sum(axis=1), 1.0, atol=1e-12)


def test_uint8_rounds_half_away_from_zero() -> None:
    # x2 weights are multiples of 1/128, so float results of integer images are exact; find exact .5s
    # where half-to-even rounding (np.round) would differ, and check MATLAB's rounding up is used.
    rng = np.random.default_rng(0)
    for _ in range(1000):
        column = rng.integers(0, 256, size=(8, 1), dtype=np.uint8)
        exact = imresize(column.astype(np.float64), 2)[:, 0]
        ties = (exact - np.floor(exact) == 0.5) & (np.floor(exact) % 2 == 0)
        if ties.any():
            break
    assert ties.any()
    # A single column stays a single (duplicated) column, so only the height pass rounds.
    got = imresize(column, 2)
    np.testing.assert_array_equal(got[ties, 0], np.floor(exact[ties]) + 1)
    np.testing.assert_array_equal(got[:, 0], got[:, 1])


def test_uint8_saturates_overshoot() -> None:
    edge = np.zeros((6, 6), dtype=np.uint8)
    edge[:, 3:] = 255
    exact = imresize(edge.astype(np.float64), 2)
    assert exact.min() < 0 and exact.max() > 255  # bicubic rings at a hard edge
    got = imresize(edge, 2)
    assert got.min() == 0 and got.max() == 255
    np.testing.assert_array_equal(got, np.floor(np.clip(exact, 0, 255) + 0.5))


@pytest.mark.parametrize(
    ("shape", "scale", "expected"),
    [((7, 9), 1 / 2, (4, 5)), ((7, 9), 1 / 3, (3, 3)), ((7, 9, 3), 2, (14, 18, 3)), ((255, 3), 1 / 3, (85, 1))],
)
def test_output_size_is_ceil(shape: tuple[int, ...], scale: float, expected: tuple[int, ...]) -> None:
    assert imresize(np.zeros(shape, dtype=np.uint8), scale).shape == expected


def test_bad_input_is_rejected() -> None:
    with pytest.raises(TypeError, match="uint8 or float"):
        imresize(np.zeros((4, 4), dtype=np.int32), 2)
    with pytest.raises(ValueError, match="scale"):
        imresize(np.zeros((4, 4)), 0)
    with pytest.raises(ValueError, match="shape"):
        imresize(np.zeros((2, 4, 4, 3)), 2)


def test_modcrop() -> None:
    image = np.arange(7 * 10 * 3).reshape(7, 10, 3)
    np.testing.assert_array_equal(modcrop(image, 3), image[:6, :9])
    assert modcrop(image[..., 0], 4).shape == (4, 8)
    assert modcrop(image, 1).shape == image.shape
    with pytest.raises(ValueError, match="integer scale"):
        modcrop(image, 1.5)  # type: ignore[arg-type]
