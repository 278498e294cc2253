"""Is an int8 model deployable? Its output against its own fp32 output on the stress suite and on photo sets.

Three kinds of evidence (issue 9), each with a limit from ``quantize.limits``:

- **photo sets** (every benchmark set, the validation split, large photographs): the mean PSNR-Y drop
  from fp32 to int8 per set, and the worst image;
- **stress images** (:mod:`edgesr.data.stress`): the int8 output against the fp32 output of the same
  model, as max and mean absolute error in 8-bit levels and PSNR (RGB), with a PSNR floor;
- **flat images**: tighter bounds on the int8-vs-fp32 error (mean and max in levels), and, reported
  for both forms, the output against the input colour itself and the spread of the ``s x s`` sub-pixel
  phase means, which is what a range error before ``DepthToSpace`` shows as (stripes). The fp32 form's
  own distance from the colour is the model's fidelity, not a quantization error: it is reported, and
  it does not decide whether the int8 form is deployable.

The functions here compare arrays and apply limits; running models is the caller's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

import numpy as np

from edgesr.quant.settings import Int8Limits

__all__ = ["SetSummary", "flat_errors", "int8_failures", "output_errors"]


class SetSummary(TypedDict):
    """One photo set's fp32 -> int8 comparison: the mean PSNR-Y drop (dB) and the worst image with its drop."""

    drop: float
    worst_image: str
    worst_drop: float


def _interior(image: np.ndarray, margin: int) -> np.ndarray:
    return image[margin:-margin, margin:-margin] if margin else image


def output_errors(output: np.ndarray, reference: np.ndarray, margin: int) -> dict[str, float]:
    """Max and mean |output - reference| in 8-bit levels and PSNR (RGB, peak 255; 99 dB when equal),
    ``margin`` pixels cropped from every border."""
    if output.shape != reference.shape:
        raise ValueError(f"outputs of different shapes: {output.shape} vs {reference.shape}")
    diff = np.abs(_interior(output, margin).astype(np.float64) - _interior(reference, margin))
    mse = float(np.mean(diff**2))
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "psnr": 99.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse)),
    }


def flat_errors(output: np.ndarray, level: tuple[int, int, int], scale: int, margin: int) -> dict[str, float]:
    """How far the output of a flat LR image of colour ``level`` is from that colour, ``margin`` HR pixels
    cropped: max and mean absolute error in levels, and ``phase_spread``, the largest difference between
    the means of the ``scale x scale`` sub-pixel phases of one channel (stripes, in levels)."""
    inner = _interior(output, margin).astype(np.float64)
    errors = np.abs(inner - np.asarray(level, dtype=np.float64))
    phases = [inner[i::scale, j::scale].mean(axis=(0, 1)) for i in range(scale) for j in range(scale)]
    spread = np.ptp(np.stack(phases), axis=0)
    return {"max_abs": float(errors.max()), "mean_abs": float(errors.mean()), "phase_spread": float(spread.max())}


def int8_failures(
    sets: Mapping[str, SetSummary],
    stress: Mapping[str, Mapping[str, Mapping[str, float]]],
    limits: Int8Limits,
) -> list[str]:
    """Every broken limit of one int8 model, as a sentence naming the check, the value and the limit.

    ``sets``: set name -> {"drop": mean dB, "worst_image": name, "worst_drop": dB}; ``stress``: image name ->
    {"int8_vs_fp32": :func:`output_errors`, "int8_flat" and "fp32_flat": :func:`flat_errors` (flat images)}.
    An empty list means the int8 model is deployable.
    """
    failures = []
    for name, summary in sets.items():
        if summary["drop"] > limits.set_drop_db:
            failures.append(
                f"{name}: mean PSNR-Y drop {summary['drop']:.2f} dB > {limits.set_drop_db} "
                f"(quantize.limits.set_drop_db; worst image {summary['worst_image']}: {summary['worst_drop']:.2f} dB)"
            )
    for name, result in stress.items():
        errors = result["int8_vs_fp32"]
        if errors["psnr"] < limits.stress_psnr_db:
            failures.append(
                f"stress image {name}: int8 vs fp32 PSNR {errors['psnr']:.1f} dB < {limits.stress_psnr_db} "
                f"(quantize.limits.stress_psnr_db; max error {errors['max_abs']:.0f} levels)"
            )
        if "int8_flat" in result and (
            errors["mean_abs"] > limits.flat_mean_levels or errors["max_abs"] > limits.flat_max_levels
        ):
            failures.append(
                f"flat image {name}: int8 differs from fp32 by {errors['mean_abs']:.1f} levels on average and "
                f"{errors['max_abs']:.0f} at most (quantize.limits.flat_mean_levels {limits.flat_mean_levels}, "
                f"flat_max_levels {limits.flat_max_levels}; int8 sub-pixel phase spread "
                f"{result['int8_flat']['phase_spread']:.1f} levels)"
            )
    return failures
