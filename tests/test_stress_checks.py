"""The content stress suite, the int8 checks' numbers and limits, and calibration that covers the input domain."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from edgesr.data.imresize import imresize
from edgesr.data.stress import FLAT_COLOURS, FLAT_GREYS, stress_images
from edgesr.quant.calibration import calibration_patches, synthetic_patches
from edgesr.quant.checks import flat_errors, int8_failures, output_errors
from edgesr.quant.settings import Int8Limits


@pytest.fixture(scope="module")
def suite():
    return {image.name: image for image in stress_images()}


def test_the_suite_holds_every_kind_of_content_users_feed(suite):
    kinds = {image.kind for image in suite.values()}
    assert kinds == {"flat", "ramp", "pattern", "chart", "bright", "dark"}
    flats = {name: image for name, image in suite.items() if image.kind == "flat"}
    # every grey level (0 and 255 included) and every primary / secondary colour, exactly that colour
    assert len(flats) == len(FLAT_GREYS) + len(FLAT_COLOURS)
    assert {0, 255} <= {image.flat_level[0] for image in flats.values() if len(set(image.flat_level)) == 1}
    for image in flats.values():
        assert image.lr.dtype == np.uint8 and (image.lr == np.array(image.flat_level, dtype=np.uint8)).all()
    # the grey ramp holds all 256 levels; the checkerboard and the text are pure black and white
    assert set(np.unique(suite["ramp_grey"].lr)) == set(range(256))
    assert set(np.unique(suite["checkerboard_1px"].lr)) == {0, 255}
    text = suite["text_black_on_white"].lr
    assert (text == 255).mean() > 0.6 and (text == 0).any()
    # bright photos clip (some pixels at 255) and stay bright; dark photos stay in the low levels
    for image in suite.values():
        if image.kind == "bright":
            assert (image.lr == 255).any(axis=2).mean() > 0.05 and image.lr.mean() > 140, image.name
        if image.kind == "dark":
            assert image.lr.max() < 80 and image.lr.mean() < 40, image.name
    # saturated: the colour chart has pixels with one channel at 255 and another at 0
    chart = suite["colour_chart"].lr.reshape(-1, 3)
    assert ((chart.max(axis=1) == 255) & (chart.min(axis=1) == 0)).mean() > 0.25


def test_the_suite_is_deterministic(suite):
    again = {image.name: image.lr for image in stress_images()}
    assert all(np.array_equal(suite[name].lr, again[name]) for name in suite)


def test_output_errors_in_levels_and_psnr():
    reference = np.full((10, 10, 3), 100, dtype=np.uint8)
    output = reference.copy()
    output[5, 5, 0] = 110  # one value off by 10 levels
    errors = output_errors(output, reference, margin=0)
    assert errors["max_abs"] == 10 and errors["mean_abs"] == pytest.approx(10 / 300)
    assert errors["psnr"] == pytest.approx(10 * np.log10(255**2 / (100 / 300)))
    assert output_errors(output, reference, margin=0)["psnr"] < output_errors(reference, reference, 0)["psnr"] == 99
    # the margin leaves the border out
    output[0, 0] = 0
    assert output_errors(output, reference, margin=1)["max_abs"] == 10
    with pytest.raises(ValueError, match="different shapes"):
        output_errors(output[:5], reference, 0)


def test_flat_errors_see_the_stripes_of_the_issue():
    # Given the defect of issue 9: a white image whose every odd column came back at 151
    striped = np.full((32, 32, 3), 255, dtype=np.uint8)
    striped[:, 1::2] = 151
    errors = flat_errors(striped, (255, 255, 255), scale=2, margin=2)
    assert errors["phase_spread"] == 104 and errors["max_abs"] == 104 and errors["mean_abs"] == 52
    # a uniformly darker image has no stripes, only an offset
    darker = np.full((32, 32, 3), 250, dtype=np.uint8)
    assert flat_errors(darker, (255, 255, 255), 2, 2) == {"max_abs": 5, "mean_abs": 5, "phase_spread": 0}


def _stress(psnr: float, max_abs: float, mean_abs: float, flat: bool) -> dict:
    result = {"int8_vs_fp32": {"psnr": psnr, "max_abs": max_abs, "mean_abs": mean_abs}}
    if flat:
        result["int8_flat"] = result["fp32_flat"] = {"max_abs": 0.0, "mean_abs": 0.0, "phase_spread": 0.0}
    return result


def test_int8_failures_name_the_check_the_value_and_the_limit():
    limits = Int8Limits(set_drop_db=0.3, stress_psnr_db=35, flat_mean_levels=2, flat_max_levels=8)
    sets = {"Set5": {"drop": 0.12, "worst_image": "bird", "worst_drop": 0.2}}
    stress = {"ramp_grey": _stress(45, 4, 1, False), "flat_grey_255": _stress(50, 3, 1.5, True)}
    assert int8_failures(sets, stress, limits) == []
    sets["SunHays80"] = {"drop": 4.8, "worst_image": "snow", "worst_drop": 16.7}
    stress["flat_grey_255"] = _stress(50, 104, 52, True)
    stress["text_black_on_white"] = _stress(30.5, 60, 2, False)
    failures = int8_failures(sets, stress, limits)
    assert len(failures) == 3
    assert failures[0].startswith("SunHays80: mean PSNR-Y drop 4.80 dB > 0.3")
    assert "worst image snow: 16.70" in failures[0]
    assert "flat image flat_grey_255: int8 differs from fp32 by 52.0 levels on average and 104 at most" in failures[1]
    assert "stress image text_black_on_white: int8 vs fp32 PSNR 30.5 dB < 35" in failures[2]
    # a large error on a non-flat image is judged by the PSNR floor only
    stress["text_black_on_white"] = _stress(40, 60, 2, False)
    assert len(int8_failures(sets, stress, limits)) == 2


@pytest.fixture(scope="module")
def pairs():
    hr = data.astronaut()[100:260, 100:260]  # a mid-tone crop: no pure black, white or saturated colour
    return [("astronaut", imresize(hr, 0.5), hr)]


def test_calibration_covers_the_input_domain(pairs):
    patches = calibration_patches(pairs, 2, 200, 16, seed=3)
    assert len(patches) == 200 and all(p.shape == (1, 3, 16, 16) and p.dtype == np.float32 for p in patches)
    stacked = np.concatenate(patches)
    # training crops alone stay inside the photo's range; the calibration set reaches both ends, per channel
    crops = np.concatenate(calibration_patches(pairs, 2, 200, 16, seed=3, exposed_fraction=0, synthetic_fraction=0))
    assert crops.max() < 1.0
    assert (stacked.min(axis=(0, 2, 3)) == 0).all() and (stacked.max(axis=(0, 2, 3)) == 1).all()
    # flat patches in saturated colours (one channel 1, another 0) and dark, re-exposed crops are there
    flat = [p[0] for p in patches if np.ptp(p) == 0 or all(np.ptp(p[0, c]) == 0 for c in range(3))]
    assert any(f.max() == 1 and f.min() == 0 for f in flat)
    assert sum(p.max() < 0.35 for p in patches) >= 10
    # seeded: the same patches again
    again = calibration_patches(pairs, 2, 200, 16, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(patches, again, strict=True))


def test_calibration_shares_and_their_errors(pairs):
    assert len(synthetic_patches(8, 12, seed=0)) == 8
    patches = calibration_patches(pairs, 2, 40, 16, seed=0, exposed_fraction=0, synthetic_fraction=1)
    assert all(np.array_equal(a, b) for a, b in zip(patches, synthetic_patches(40, 16, seed=0), strict=True))
    with pytest.raises(ValueError, match="sum to at most 1"):
        calibration_patches(pairs, 2, 10, 16, seed=0, exposed_fraction=0.6, synthetic_fraction=0.6)
    with pytest.raises(ValueError, match="at least one calibration patch"):
        calibration_patches(pairs, 2, 0, 16, seed=0)
