"""How well the whole-network latency model ranks deployed int8 subnets it was not fitted on (issue 13 item 2).

    .venv/bin/python benchmarks/network_latency.py --blocks 4 --width 32 --subnets 20

Builds (or reads from this machine's cache) :func:`edgesr.search.network_latency.build_network_model` for
``Supernet(blocks, width)`` at x``scale`` (the int8 conv table of the deploy form's shapes, then the
non-conv part fitted on ``--fit-subnets`` random subnets of seed 0), draws ``--subnets`` other random
subnets (seed ``--seed``, 10 % .. 90 % of the gates open, every other one with pruned blocks), quantizes
each deploy form with NNCF as the ``quantize`` stage does and times them on OpenVINO round-robin (one run
of each per round, median over ``--rounds``), on ``--threads`` threads at the LR size of a 1280x720 output.

Reports Spearman, Kendall and Pearson correlation and MAPE against the measured latency of: the model,
its conv part alone (the old per-layer idea on the deployed shapes), and Eq. 3's Mult-Adds (with a
leave-one-out linear fit for its MAPE), and the model's scores on the subnets with pruned blocks alone
(the thin networks a latency search ends in). Writes ``benchmarks/results/network_latency.json`` and a
scatter plot ``network_latency.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402
import torch  # noqa: E402
from latency_estimate import correlations, fit_linear, loo_mape, mape  # noqa: E402  (a sibling script)

from edgesr.config import load_params  # noqa: E402
from edgesr.files import atomic_write, write_json  # noqa: E402
from edgesr.search.latency_table import lr_size  # noqa: E402
from edgesr.search.network_latency import (  # noqa: E402
    TERMS,
    build_network_model,
    measured_subnets,
    network_terms,
)
from edgesr.search.settings import SupernetConfig  # noqa: E402

OUTPUT_HW = (720, 1280)


def scores(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    return {**correlations(predicted, measured), "mape": mape(predicted, measured)}


def plot(measured: np.ndarray, predicted: np.ndarray, conv: np.ndarray, title: str, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(5.5, 5))
    axis.scatter(measured, predicted, label="whole-network model")
    axis.scatter(measured, conv, marker="x", label="its conv part alone")
    top = float(max(measured.max(), predicted.max()))
    axis.plot([0, top], [0, top], color="grey", linewidth=0.8)
    axis.set_xlabel("measured (ms)")
    axis.set_ylabel("estimated (ms)")
    axis.set_title(title, fontsize=9)
    axis.legend()
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=110, format="png"))
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    parser.add_argument("--precision", default="int8", choices=("int8", "f32"))
    parser.add_argument("--subnets", type=int, default=20, help="held-out random subnets (>= 10)")
    parser.add_argument("--fit-subnets", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15, help="round-robin rounds timing the subnets")
    parser.add_argument("--seed", type=int, default=1, help="the held-out subnets (the fit uses seed 0)")
    parser.add_argument("--refresh", action="store_true", help="measure the model even when cached")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="for quantize.float_modules")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/network_latency.json"))
    args = parser.parse_args()
    if args.subnets < 10 or args.seed == 0:
        parser.error("--subnets must be >= 10 and --seed must differ from the fit's seed 0")

    cfg = SupernetConfig(num_blocks=args.blocks, width=args.width, bicubic_skip=True)
    float_modules = load_params(args.params).quantize.float_modules  # kept in float as the quantize stage does
    start = time.perf_counter()
    model = build_network_model(
        cfg,
        args.scale,
        OUTPUT_HW,
        precision=args.precision,
        threads=args.threads,
        fit_subnets=args.fit_subnets,
        float_modules=float_modules,
        refresh=args.refresh,
    )
    build_seconds = time.perf_counter() - start
    held_out = measured_subnets(
        cfg,
        args.scale,
        lr_size(args.scale, OUTPUT_HW),
        args.subnets,
        args.seed,
        precision=args.precision,
        threads=args.threads,
        float_modules=float_modules,
        rounds=args.rounds,
        warmup=3,
    )
    terms = network_terms(model.table, [net for net, _ in held_out])  # TERMS per subnet, to refit offline
    with torch.no_grad():
        rows = [
            {
                "pruned_blocks": sum(float(b.residual.sum()) == 0 for b in net.gates().blocks),
                "measured_ms": ms,
                "estimate_ms": float(model.estimate_ms(net)),
                "conv_estimate_ms": float(row[0]),
                "mult_adds": float(net.mult_adds(OUTPUT_HW)),
                "terms": row.tolist(),
            }
            for (net, ms), row in zip(held_out, terms, strict=True)
        ]
    measured, estimate, conv, mult_adds = (
        np.array([r[k] for r in rows]) for k in ("measured_ms", "estimate_ms", "conv_estimate_ms", "mult_adds")
    )
    pruned = np.array([r["pruned_blocks"] > 0 for r in rows])
    metrics = {
        "network_model": scores(estimate, measured),
        "conv_part_alone": scores(conv, measured),
        "mult_adds": {**scores(mult_adds, measured), "mape": loo_mape(fit_linear, mult_adds, measured)},
    }
    if pruned.sum() >= 3:
        metrics["network_model_pruned_blocks"] = scores(estimate[pruned], measured[pruned])
    result = {
        "supernet": cfg.model_dump(mode="json"),
        "scale": args.scale,
        "precision": args.precision,
        "runtime": "openvino",
        "openvino": ov.get_version(),
        "threads": args.threads,
        "lr_hw": list(lr_size(args.scale, OUTPUT_HW)),
        "held_out_subnets": args.subnets,
        "fit_subnets": args.fit_subnets,
        "rounds": args.rounds,
        "model": {
            "coefficients": dict(zip(TERMS, model.coefficients, strict=True)),
            "build_seconds_this_run": build_seconds,
            "key": model.meta.get("key"),
            "table_key": model.table.meta.get("key"),
        },
        "metrics": metrics,
        "rows": rows,
    }
    write_json(args.out, result)
    title = (
        f"{args.precision} OpenVINO, {args.threads} threads, "
        f"{args.subnets} held-out subnets of {args.blocks}x{args.width}"
    )
    plot(measured, estimate, conv, title, args.out.with_suffix(".png"))
    print(f"model built in {build_seconds:.0f} s; coefficients {dict(zip(TERMS, model.coefficients, strict=True))}")
    print(f"{'predictor':<28}{'spearman':>9}{'kendall':>9}{'pearson':>9}{'MAPE':>8}")
    for name, m in metrics.items():
        print(f"{name:<28}{m['spearman']:>9.3f}{m['kendall']:>9.3f}{m['pearson']:>9.3f}{m['mape']:>8.1%}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
