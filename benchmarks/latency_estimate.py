"""How well the latency table predicts the measured latency of extracted FGNAS subnets (paper 002 idea).

    .venv/bin/python benchmarks/latency_estimate.py --blocks 4 --width 32 --scale 2 --subnets 14

Builds (or reads from the cache) the per-layer OpenVINO latency table of ``Supernet(blocks, width)`` at
the LR size of a 1280x720 output, then draws random architectures with 10 % .. 90 % of the gates open
(psi set to random values, Eq. 1's threshold psi > 0.5), extracts each subnet, converts its deployed
form (:func:`edgesr.deploy.export.prepare_for_export`: plain convolutions and activations without
channel Gather / Pad or masks) to OpenVINO (fp32) and times it on the same LR input. The subnets are timed
round-robin (one run of each per round, ``--repeats`` rounds, median per subnet), so load from other
processes is spread over all of them instead of biasing a few. For every subnet it records:

- ``measured_ms``: median wall time of ``infer()`` (no profiling);
- ``measured_conv_ms``: the OpenVINO profiler's time of the convolution nodes alone (a separate,
  profiled compile), i.e. the part of the network the table models;
- ``estimate_ms``: :meth:`LatencyTable.estimate_ms` of the cleaned supernet's counted convs;
- ``mult_adds``: :meth:`Supernet.mult_adds` (Eq. 3), the baseline predictor.

Reports Spearman, Kendall and Pearson correlation and MAPE of the estimate vs the measured latency,
the same for Mult-Adds, the per-network overhead (mean of measured - estimate) with its
leave-one-out MAPE, and writes ``benchmarks/results/latency_estimate.json`` and a scatter plot.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402
from tqdm import tqdm  # noqa: E402

from edgesr.deploy.export import prepare_for_export  # noqa: E402
from edgesr.deploy.runtimes import openvino_config  # noqa: E402
from edgesr.files import atomic_write, write_json  # noqa: E402
from edgesr.search.extract import extract_subnet  # noqa: E402
from edgesr.search.gates import GATE_THRESHOLD  # noqa: E402
from edgesr.search.latency_table import build_latency_table, lr_size  # noqa: E402
from edgesr.search.network_latency import random_architecture  # noqa: E402
from edgesr.search.settings import SupernetConfig  # noqa: E402
from edgesr.search.supernet import Supernet  # noqa: E402

OUTPUT_HW = (720, 1280)


def correlations(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    return {
        "spearman": float(stats.spearmanr(predicted, measured).statistic),
        "kendall": float(stats.kendalltau(predicted, measured).statistic),
        "pearson": float(stats.pearsonr(predicted, measured).statistic),
    }


def mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - measured) / measured))


def loo_mape(fit: Any, x: np.ndarray, y: np.ndarray) -> float:
    """MAPE of ``fit(x_train, y_train) -> predict`` evaluated leave-one-out (an honest calibrated error)."""
    errors = []
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        errors.append(abs(fit(x[keep], y[keep])(x[i]) - y[i]) / y[i])
    return float(np.mean(errors))


def fit_overhead(x: np.ndarray, y: np.ndarray) -> Any:
    overhead = float(np.mean(y - x))
    return lambda value: value + overhead


def fit_linear(x: np.ndarray, y: np.ndarray) -> Any:
    slope, intercept = np.polyfit(x, y, 1)
    return lambda value: slope * value + intercept


def conv_time_ms(request: Any) -> float:
    return sum(p.real_time.total_seconds() for p in request.get_profiling_info() if p.node_type == "Convolution") * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    parser.add_argument("--subnets", type=int, default=14, help="random architectures (>= 10)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--step", type=int, default=8, help="channel grid step of the table")
    parser.add_argument("--table-rounds", type=int, default=3)
    parser.add_argument("--table-repeats", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=25, help="round-robin rounds timing the subnets")
    parser.add_argument("--profile-repeats", type=int, default=5, help="profiled runs for the conv-only time")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refresh-table", action="store_true", help="measure the table even when cached")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latency_estimate.json"))
    parser.add_argument("--plot", type=Path, default=Path("benchmarks/results/latency_estimate.png"))
    args = parser.parse_args()
    if args.subnets < 10:
        parser.error("--subnets must be >= 10 for a meaningful rank correlation")

    cfg = SupernetConfig(num_blocks=args.blocks, width=args.width)
    lr_hw = lr_size(args.scale, OUTPUT_HW)
    start = time.perf_counter()
    table = build_latency_table(
        cfg,
        args.scale,
        OUTPUT_HW,
        threads=args.threads,
        step=args.step,
        rounds=args.table_rounds,
        repeats=args.table_repeats,
        cache_dir=args.cache_dir,
        refresh=args.refresh_table,
    )
    table_seconds = time.perf_counter() - start

    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    fractions = np.random.default_rng(args.seed).permutation(np.linspace(0.1, 0.9, args.subnets))
    core, example = ov.Core(), torch.rand(1, 3, *lr_hw)
    rows: list[dict[str, Any]] = []
    requests = []
    for fraction in tqdm(fractions, desc="subnets: extract, convert, compile"):
        supernet = Supernet(cfg, args.scale).eval()
        random_architecture(supernet, float(fraction), generator)
        subnet = extract_subnet(supernet).eval()  # cleans the gates in place first
        with torch.no_grad():
            convs = supernet.counted_convs()
            estimate = float(table.estimate_ms(convs))
            mult_adds = float(supernet.mult_adds(OUTPUT_HW))
            model = ov.convert_model(prepare_for_export(subnet), example_input=example)
        profiled = core.compile_model(model, "CPU", openvino_config(args.threads, "f32", profile=True))
        profile_request = profiled.create_infer_request()
        profile_request.set_input_tensor(ov.Tensor(example.numpy()))
        conv_times = []
        for index in range(args.warmup + args.profile_repeats):
            profile_request.infer()
            if index >= args.warmup:
                conv_times.append(conv_time_ms(profile_request))
        del profile_request, profiled
        compiled = core.compile_model(model, "CPU", openvino_config(args.threads, "f32"))
        request = compiled.create_infer_request()
        request.set_input_tensor(ov.Tensor(example.numpy()))
        for _ in range(args.warmup):
            request.infer()
        requests.append((compiled, request))
        gates = [p.detach() > GATE_THRESHOLD for p in supernet.gate_parameters()]
        rows.append(
            {
                "open_fraction_target": float(fraction),
                "open_fraction": float(sum(g.sum() for g in gates) / sum(g.numel() for g in gates)),
                "blocks_kept": len(subnet.body),
                "convs": {c.name: [int(c.alive_in), int(c.alive_out)] for c in convs},
                "estimate_ms": estimate,
                "mult_adds": mult_adds,
                "measured_conv_ms": statistics.median(conv_times),
            }
        )

    times: list[list[float]] = [[] for _ in rows]
    for _ in tqdm(range(args.repeats), desc="round-robin timing"):
        for index, (_, request) in enumerate(requests):
            begin = time.perf_counter()
            request.infer()
            times[index].append((time.perf_counter() - begin) * 1e3)
    for row, samples in zip(rows, times, strict=True):
        row["measured_ms"] = statistics.median(samples)
        row["measured_min_ms"] = min(samples)

    measured = np.array([r["measured_ms"] for r in rows])
    measured_conv = np.array([r["measured_conv_ms"] for r in rows])
    estimate = np.array([r["estimate_ms"] for r in rows])
    mult_adds = np.array([r["mult_adds"] for r in rows])
    overhead = float(np.mean(measured - estimate))
    metrics = {
        "estimate_vs_measured": {
            **correlations(estimate, measured),
            "mape": mape(estimate, measured),
            "overhead_ms": overhead,
            "mape_with_overhead_loo": loo_mape(fit_overhead, estimate, measured),
            "mape_linear_fit_loo": loo_mape(fit_linear, estimate, measured),
        },
        "estimate_vs_measured_conv_part": {
            **correlations(estimate, measured_conv),
            "mape": mape(estimate, measured_conv),
        },
        "mult_adds_vs_measured": {
            **correlations(mult_adds, measured),
            "mape_linear_fit_loo": loo_mape(fit_linear, mult_adds, measured),
        },
        "mult_adds_vs_measured_conv_part": correlations(mult_adds, measured_conv),
        "conv_share_of_measured": float(np.median(measured_conv / measured)),
    }
    result = {
        "supernet": cfg.model_dump(),
        "scale": args.scale,
        "lr_hw": list(lr_hw),
        "output_hw": list(OUTPUT_HW),
        "runtime": "openvino",
        "openvino": ov.get_version(),
        "precision": "f32",
        "threads": args.threads,
        "cpu": table.meta["fingerprint"]["cpu"],
        "machine": platform.machine(),
        "subnets": len(rows),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "table": {
            "seconds_this_run": table_seconds,
            "build_seconds": table.meta["build_seconds"],
            "from_cache": "from_cache" in table.meta,
            "step": args.step,
            "rounds": table.meta["rounds"],
            "repeats": table.meta["repeats"],
            "key": table.meta["key"],
            "grids": {kind: grid.as_dict() for kind, grid in table.grids.items()},
        },
        "metrics": metrics,
        "rows": rows,
    }
    write_json(args.out, result)
    plot(rows, overhead, args.plot)

    e, m = metrics["estimate_vs_measured"], metrics["mult_adds_vs_measured"]
    print(
        f"table: {table.meta['build_seconds']:.1f} s to build ({'cached' if result['table']['from_cache'] else 'now'})"
    )
    print(f"{'predictor':<22}{'spearman':>9}{'kendall':>9}{'pearson':>9}{'MAPE':>8}{'MAPE+ovh':>10}{'MAPE lin':>10}")
    print(
        f"{'latency table':<22}{e['spearman']:>9.3f}{e['kendall']:>9.3f}{e['pearson']:>9.3f}{e['mape']:>8.1%}"
        f"{e['mape_with_overhead_loo']:>10.1%}{e['mape_linear_fit_loo']:>10.1%}"
    )
    print(
        f"{'Mult-Adds':<22}{m['spearman']:>9.3f}{m['kendall']:>9.3f}{m['pearson']:>9.3f}{'':>8}{'':>10}"
        f"{m['mape_linear_fit_loo']:>10.1%}"
    )
    c = metrics["estimate_vs_measured_conv_part"]
    print(
        f"{'table vs conv part':<22}{c['spearman']:>9.3f}{c['kendall']:>9.3f}{c['pearson']:>9.3f}{c['mape']:>8.1%}"
        f"   (convs are {metrics['conv_share_of_measured']:.0%} of the measured latency; overhead {overhead:.1f} ms)"
    )
    print(f"wrote {args.out} and {args.plot}")


def plot(rows: list[dict[str, Any]], overhead: float, path: Path) -> None:
    measured = [r["measured_ms"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    estimate = [r["estimate_ms"] for r in rows]
    left.scatter(estimate, measured, label="whole network (wall)")
    left.scatter(estimate, [r["measured_conv_ms"] for r in rows], marker="x", label="conv nodes (profiler)")
    line = np.linspace(0, max(max(estimate), max(measured)) * 1.05, 2)
    left.plot(line, line, "k--", lw=1, label="y = x")
    left.plot(line, line + overhead, "k:", lw=1, label=f"y = x + {overhead:.0f} ms")
    left.set(xlabel="latency table estimate (ms)", ylabel="measured OpenVINO latency (ms)", title="Latency table")
    left.legend(fontsize=8)
    right.scatter([r["mult_adds"] / 1e9 for r in rows], measured)
    right.set(xlabel="Mult-Adds at 720p (G, Eq. 3)", ylabel="measured OpenVINO latency (ms)", title="Mult-Adds")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda temporary: fig.savefig(temporary, dpi=120, format="png"))
    plt.close(fig)


if __name__ == "__main__":
    main()
