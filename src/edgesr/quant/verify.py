"""Verify an int8 model against its own fp32 form: photo sets, the stress suite, flat images; the verdict.

Both forms run through the same ``upscale`` function the user gets (``edgesr upscale``'s tiling and
border padding), so what is verified is what ships. The comparisons and limits are in
:mod:`edgesr.quant.checks`; this module runs the models and assembles one result per model and runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from tqdm import tqdm

from edgesr.data.stress import StressImage
from edgesr.deploy.runtimes import Runner
from edgesr.metrics import mean_psnr, psnr_y
from edgesr.quant.checks import SetSummary, flat_errors, int8_failures, output_errors
from edgesr.quant.settings import Int8Limits

__all__ = ["Upscale", "verify_int8"]

Upscale = Callable[[Runner, np.ndarray], np.ndarray]
"""(runner, uint8 LR (H, W, 3)) -> uint8 SR (sH, sW, 3)."""

Pairs = list[tuple[str, np.ndarray, np.ndarray]]


def _set_result(
    fp32: Runner, int8: Runner, pairs: Pairs, scale: int, upscale: Upscale
) -> tuple[dict[str, float], dict[str, float]]:
    """Per-image PSNR-Y (border ``scale``) of both forms."""
    scores: dict[str, dict[str, float]] = {"fp32": {}, "int8": {}}
    for name, lr, hr in tqdm(pairs, desc="verify", unit="image", leave=False, disable=len(pairs) < 10):
        scores["fp32"][name] = psnr_y(upscale(fp32, lr), hr, scale)
        scores["int8"][name] = psnr_y(upscale(int8, lr), hr, scale)
    return scores["fp32"], scores["int8"]


def _stress_result(
    fp32: Runner, int8: Runner, image: StressImage, scale: int, upscale: Upscale
) -> dict[str, dict[str, float]]:
    """int8 vs fp32 output (``scale`` HR pixels of margin) and, for a flat image, both against its colour
    (``2 scale`` HR pixels of margin: one LR pixel of border context for the interpolating skip)."""
    reference, output = upscale(fp32, image.lr), upscale(int8, image.lr)
    result = {"int8_vs_fp32": output_errors(output, reference, scale)}
    if image.flat_level is not None:
        result["fp32_flat"] = flat_errors(reference, image.flat_level, scale, 2 * scale)
        result["int8_flat"] = flat_errors(output, image.flat_level, scale, 2 * scale)
    return result


def _stress_summary(stress: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, object]:
    """The stress suite in a few numbers: the worst int8-vs-fp32 image, the worst flat image for each form."""
    worst = min(stress, key=lambda name: stress[name]["int8_vs_fp32"]["psnr"])
    summary: dict[str, object] = {"worst_image": worst, **stress[worst]["int8_vs_fp32"]}
    flats = [name for name in stress if "int8_flat" in stress[name]]
    for form in ("fp32", "int8"):
        if flats:
            name = max(flats, key=lambda n: stress[n][f"{form}_flat"]["mean_abs"])
            summary[f"{form}_worst_flat"] = {"image": name, **stress[name][f"{form}_flat"]}
    return summary


def verify_int8(
    fp32: Runner,
    int8: Runner,
    sets: Mapping[str, Pairs],
    stress: list[StressImage],
    scale: int,
    upscale: Upscale,
    limits: Int8Limits,
) -> dict:
    """Everything the report needs about one int8 model on one runtime.

    Returns ``{"psnr": {"fp32"|"int8": {set: mean}}, "sets": {set: {"drop", "worst_image", "worst_drop"}},
    "images": {set: {image: {"fp32", "int8"}}}, "stress": {image: ...}, "stress_summary": {...}, "failures": [...],
    "deployable"}``.
    """
    psnr: dict[str, dict[str, float]] = {"fp32": {}, "int8": {}}
    summaries: dict[str, SetSummary] = {}
    images: dict[str, dict[str, dict[str, float]]] = {}
    for set_name, pairs in sets.items():
        before, after = _set_result(fp32, int8, pairs, scale, upscale)
        drops = {name: before[name] - after[name] for name in before}
        worst = max(drops, key=drops.__getitem__)
        psnr["fp32"][set_name] = mean_psnr(before.values())
        psnr["int8"][set_name] = mean_psnr(after.values())
        summaries[set_name] = {
            "drop": psnr["fp32"][set_name] - psnr["int8"][set_name],
            "worst_image": worst,
            "worst_drop": drops[worst],
        }
        images[set_name] = {name: {"fp32": before[name], "int8": after[name]} for name in before}
    stress_results = {image.name: _stress_result(fp32, int8, image, scale, upscale) for image in stress}
    failures = int8_failures(summaries, stress_results, limits)
    return {
        "psnr": psnr,
        "sets": summaries,
        "images": images,
        "stress": stress_results,
        "stress_summary": _stress_summary(stress_results),
        "failures": failures,
        "deployable": not failures,
    }
