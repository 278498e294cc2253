"""CPU latency of every zoo model side by side, in one run (not a test: results go to JSON).

    .venv/bin/python benchmarks/zoo_latency.py --scale 2 --threads 2 --repeats 10

For each model (default configuration): parameters, Mult-Adds for a 1280x720 output, median latency
of a 640x360 input (x2; the input is 1280/s x 720/s in general), achieved GMAC/s, and the latency
ratio to FSRCNN measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from tqdm import tqdm

from edgesr.complexity import count_complexity
from edgesr.latency import measure_latency
from edgesr.models import MODEL_NAMES, build_model, default_model_config

REFERENCE = "fsrcnn"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/zoo_latency.json"))
    args = parser.parse_args()

    output_hw = (720, 1280)
    input_hw = (output_hw[0] // args.scale, output_hw[1] // args.scale)
    rows = {}
    for name in tqdm(MODEL_NAMES, desc="models"):
        model = build_model(default_model_config(name), args.scale).eval()
        complexity = count_complexity(model, args.scale, output_hw)
        latency = measure_latency(model, input_hw, repeats=args.repeats, warmup=args.warmup, threads=args.threads)
        rows[name] = {
            **complexity.as_dict(),
            **latency.as_dict(),
            "gmac_per_s": complexity.mult_adds / 1e9 / (latency.median_ms / 1e3),
        }
    for row in rows.values():
        row[f"latency_vs_{REFERENCE}"] = row["median_ms"] / rows[REFERENCE]["median_ms"]

    result = {
        "scale": args.scale,
        "input_hw": input_hw,
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "models": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'model':<14}{'params':>10}{'GMAC@720p':>11}{'ms':>9}{'GMAC/s':>9}{'vs ' + REFERENCE:>11}")
    for name, row in rows.items():
        print(
            f"{name:<14}{row['params']:>10,}{row['mult_adds'] / 1e9:>11.2f}{row['median_ms']:>9.1f}"
            f"{row['gmac_per_s']:>9.1f}{row[f'latency_vs_{REFERENCE}']:>11.2f}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
