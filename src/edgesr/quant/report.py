"""The quantization report: fp32 vs int8 side by side, per model, runtime and set, with the verdict.

STYLE.md point 9 (the NNCF examples' habit): every quantized result next to its fp32 reference, with
what really ran in int8. Besides the mean PSNR-Y per set the report names each set's worst image, the
stress suite's worst image and the flat images' errors (:mod:`edgesr.quant.verify`), and whether the
int8 model is deployable. The XLSR rows reproduce paper 003 Table 2 (clipped-ReLU vs linear output,
the int8 drop of each) on our data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["markdown", "plot_rows"]

Results = Mapping[str, Mapping[str, Mapping]]


def plot_rows(results: Results, sets: list[str]) -> list[dict[str, object]]:
    """One row per model, runtime and set (``label`` for the DVC bar plot): fp32, int8 and the drop."""
    rows = []
    for model, runtimes in results.items():
        for runtime, result in runtimes.items():
            for s in sets:
                fp32, int8 = result["psnr"]["fp32"][s], result["psnr"]["int8"][s]
                rows.append(
                    {
                        "label": f"{model} / {runtime} / {s}",
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


def _table(head: list[str]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]


def _psnr_section(results: Results, sets: list[str]) -> list[str]:
    first = next(iter(next(iter(results.values())).values()))
    counts = ", ".join(f"{s} ({len(first['images'][s])} images)" for s in sets)
    lines = ["## PSNR-Y fp32 vs int8 (mean per set, drop, worst image)", "", f"Sets: {counts}.", ""]
    lines += _table(["model", "runtime", *(f"{s} fp32 / int8 (drop; worst image)" for s in sets)])
    for model, runtimes in results.items():
        for runtime, result in runtimes.items():
            cells = [model, runtime]
            for s in sets:
                fp32, int8, summary = result["psnr"]["fp32"][s], result["psnr"]["int8"][s], result["sets"][s]
                worst = f"{summary['worst_image']} {summary['worst_drop']:+.2f}"
                cells.append(f"{fp32:.2f} / {int8:.2f} ({fp32 - int8:+.2f}; {worst})")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _flat(summary: Mapping[str, object], form: str) -> str:
    flat = summary.get(f"{form}_worst_flat")
    if not isinstance(flat, Mapping):
        return "-"
    return f"{flat['image']}: {flat['mean_abs']:.1f} / {flat['max_abs']:.0f} (stripes {flat['phase_spread']:.1f})"


def _section(title: str, head: list[str], results: Results, cells: Callable[[Mapping], list[str]]) -> list[str]:
    """A Markdown table with one row per model and runtime: the model, the runtime, then ``cells(result)``."""
    lines = ["", f"## {title}", "", *_table(["model", "runtime", *head])]
    for model, runtimes in results.items():
        for runtime, result in runtimes.items():
            lines.append("| " + " | ".join([model, runtime, *cells(result)]) + " |")
    return lines


def _stress_cells(result: Mapping) -> list[str]:
    s = result["stress_summary"]
    worst = f"{s['worst_image']}: {s['psnr']:.1f} dB / {s['max_abs']:.0f} / {s['mean_abs']:.2f}"
    return [worst, _flat(s, "int8"), _flat(s, "fp32")]


def _verdict_cells(result: Mapping) -> list[str]:
    return ["yes" if result["deployable"] else "**no**", "<br>".join(result["failures"]) or "-"]


def _executed_cells(result: Mapping) -> list[str]:
    executed = result["executed"]
    layers = "; ".join(executed["float_layers"]) or "-"
    counts = [_layer_counts(executed["int8"]), _layer_counts(executed["float"])]
    return [executed["activations"], executed["weights"], *counts, layers]


def _xlsr_section(results: Results, sets: list[str], outputs: Mapping[str, str]) -> list[str]:
    lines = ["", "## XLSR output activation and int8 drop (paper 003 Table 2)", ""]
    lines += _table(["model", "output", "runtime", *(f"{s} drop (dB)" for s in sets)])
    for model, output in outputs.items():
        for runtime, result in results[model].items():
            drops = [result["psnr"]["fp32"][s] - result["psnr"]["int8"][s] for s in sets]
            lines.append(f"| {model} | {output} | {runtime} | " + " | ".join(f"{d:.2f}" for d in drops) + " |")
    return lines


def markdown(results: Results, sets: list[str], outputs: Mapping[str, str]) -> str:
    """The report as Markdown: PSNR per set, stress suite, verdicts, executed precisions, XLSR ablation.

    ``outputs`` maps XLSR model names to their output activation (paper 003 Table 2 rows).
    """
    lines = _psnr_section(results, sets)
    lines += _section(
        "Stress suite (int8 vs fp32 of the same model) and flat images (output vs input colour)",
        [
            "worst int8 vs fp32: PSNR / max / mean (levels)",
            "int8 worst flat: mean / max",
            "fp32 worst flat: mean / max",
        ],
        results,
        _stress_cells,
    )
    lines += _section(
        "Deployable int8 models (quantize.limits)", ["int8 deployable", "failed checks"], results, _verdict_cells
    )
    lines += _section(
        "What ran in int8 (executed graph)",
        ["activations", "weights", "int8", "float", "float layers"],
        results,
        _executed_cells,
    )
    if outputs:
        lines += _xlsr_section(results, sets, outputs)
    return "\n".join(lines) + "\n"
