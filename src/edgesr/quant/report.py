"""The quantization report: fp32 vs int8 PSNR-Y side by side, per model, runtime and benchmark set.

STYLE.md point 9 (the NNCF examples' habit): every quantized result next to its fp32 reference, with
what really ran in int8. The XLSR rows reproduce paper 003 Table 2 (clipped-ReLU vs linear output,
the int8 drop of each) on our data.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edgesr.deploy.runtimes import Runner, upscale_image
from edgesr.metrics import psnr_y

__all__ = ["markdown", "plot_rows", "psnr_by_set"]


def psnr_by_set(runner: Runner, pairs: Mapping[str, list[tuple[str, np.ndarray, np.ndarray]]], scale: int) -> dict:
    """Mean PSNR-Y (border ``scale``) of whole-image upscaling per set of (name, LR, HR) pairs."""
    return {
        name: float(np.mean([psnr_y(upscale_image(runner, lr), hr, scale) for _, lr, hr in set_pairs]))
        for name, set_pairs in pairs.items()
    }


def plot_rows(results: Mapping[str, Mapping[str, Mapping]], sets: list[str]) -> list[dict[str, object]]:
    """One row per model, runtime and set (``label`` for the DVC bar plot): fp32, int8 and the drop."""
    rows = []
    for model, runtimes in results.items():
        for runtime, result in runtimes.items():
            for s in sets:
                fp32, int8 = result["psnr"]["fp32"][s], result["psnr"]["int8"][s]
                label = f"{model} / {runtime} / {s}"
                rows.append(
                    {
                        "label": label,
                        "model": model,
                        "runtime": runtime,
                        "set": s,
                        "fp32": fp32,
                        "int8": int8,
                        "drop": fp32 - int8,
                    }
                )
    return rows


def _layer_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(counts.items())) or "-"


def markdown(results: Mapping[str, Mapping[str, Mapping]], sets: list[str], outputs: Mapping[str, str]) -> str:
    """The report as Markdown: the PSNR table, the layers each runtime ran in float, the XLSR ablation.

    ``outputs`` maps XLSR model names to their output activation (paper 003 Table 2 rows).
    """
    head = ["model", "runtime", *(f"{s} fp32 / int8 (drop)" for s in sets)]
    lines = ["## PSNR-Y fp32 vs int8", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row_model, runtimes in results.items():
        for runtime, result in runtimes.items():
            cells = [row_model, runtime]
            for s in sets:
                fp32, int8 = result["psnr"]["fp32"][s], result["psnr"]["int8"][s]
                cells.append(f"{fp32:.2f} / {int8:.2f} ({fp32 - int8:+.2f})")
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "## What ran in int8 (executed graph)",
        "",
        "| model | runtime | int8 | float | float layers |",
        "|---|---|---|---|---|",
    ]
    for row_model, runtimes in results.items():
        for runtime, result in runtimes.items():
            executed = result["executed"]
            lines.append(
                f"| {row_model} | {runtime} | {_layer_counts(executed['int8'])} | {_layer_counts(executed['float'])} | "
                f"{'; '.join(executed['float_layers']) or '-'} |"
            )
    if outputs:
        lines += [
            "",
            "## XLSR output activation and int8 drop (paper 003 Table 2)",
            "",
            "| model | output | runtime | " + " | ".join(f"{s} drop (dB)" for s in sets) + " |",
            "|" + "---|" * (3 + len(sets)),
        ]
        for xlsr_model, output in outputs.items():
            for runtime, result in results[xlsr_model].items():
                drops = [result["psnr"]["fp32"][s] - result["psnr"]["int8"][s] for s in sets]
                lines.append(f"| {xlsr_model} | {output} | {runtime} | " + " | ".join(f"{d:.2f}" for d in drops) + " |")
    return "\n".join(lines) + "\n"
