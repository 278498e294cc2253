"""Searched FGNAS architectures against the plain residual network of the same Mult-Adds, where they run (issue 13).

Item 4 compares the cpu-long searched S subnet (45 G at 720p) with a plain residual net of the same cost
(8 blocks of width 36, 44.1 G) on PSNR; this times them as they ship: the FGNAS architecture in its deploy
form (:mod:`edgesr.deploy.fgnas_form`) and the plain net, each exported, quantized to int8 by NNCF as the
quantize stage does (:func:`edgesr.deploy.network_bench.network_runner`) and timed in OpenVINO on a
640x360 input in round-robin rounds, after ``--settle`` seconds idle. Latency depends on shapes, not weights,
so both run with their initial weights (the calibration ranges change the int8 scales, not the kernels).

    python benchmarks/searched_vs_plain_latency.py [--architecture benchmarks/results/cpu-long/architecture.json ...]
        [--width 36] [--blocks 8] [--rounds 40] [--threads 2]

Several ``--architecture`` files are timed in the same rounds as the plain net, each named by its file's stem.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from edgesr.architectures import FGNASArchitecture, PlainResNetConfig
from edgesr.complexity import count_complexity
from edgesr.cpu import cpu_model_and_flags, has_int8_dot_product
from edgesr.files import write_json
from edgesr.models.fgnas import FGNAS
from edgesr.models.plain_resnet import build_plain_resnet
from edgesr.search.latency_table import lr_size
from edgesr.search.network_latency import measure_networks_ms

LR_HW = lr_size(2)  # the LR frame of a 1280x720 output at x2


def time_int8(models: dict[str, nn.Module], threads: int, rounds: int, settle_s: float, desc: str) -> dict[str, dict]:
    """Each model's Mult-Adds at 720p and OpenVINO int8 median ms on ``LR_HW``, timed in the same round-robin rounds
    (:func:`edgesr.search.network_latency.measure_networks_ms`), printed as a table."""
    medians = measure_networks_ms(
        list(models.values()),
        LR_HW,
        precision="int8",
        threads=threads,
        float_modules=["bicubic"],
        rounds=rounds,
        settle_s=settle_s,
        desc=desc,
    )
    results = {}
    for (name, model), ms in zip(models.items(), medians, strict=True):
        mult_adds = count_complexity(model, 2).mult_adds
        results[name] = {"mult_adds_g": mult_adds / 1e9, "openvino_int8_ms": ms, "gmac_per_s": mult_adds / ms / 1e6}
        print(f"{name:28s} {mult_adds / 1e9:6.2f} G  {ms:7.2f} ms  {mult_adds / ms / 1e6:6.1f} GMAC/s")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--architecture", type=Path, nargs="+", default=[Path("benchmarks/results/cpu-long/architecture.json")]
    )
    parser.add_argument("--width", type=int, default=36, help="the plain net's width")
    parser.add_argument("--blocks", type=int, default=8, help="the plain net's blocks")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--settle", type=float, default=45.0, help="idle seconds before timing (see latency.py)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu-long/searched_vs_plain_latency.json"))
    args = parser.parse_args()
    stems = [path.stem for path in args.architecture]
    if len(set(stems)) < len(stems) or "plain" in stems:
        parser.error(f"results are named by file stem and {stems} repeat one or use 'plain': rename the files")

    torch.manual_seed(0)
    models = {
        path.stem: FGNAS(FGNASArchitecture.model_validate_json(path.read_text()), upscale=2, bicubic_skip=True).eval()
        for path in args.architecture
    }
    models["plain"] = build_plain_resnet(PlainResNetConfig(width=args.width, num_blocks=args.blocks), 2).eval()
    results = time_int8(models, args.threads, args.rounds, args.settle, "searched vs plain")
    summary = {
        "architectures": [str(path) for path in args.architecture],
        "plain": {"width": args.width, "num_blocks": args.blocks, "skip": "bilinear"},
        "input_hw": list(LR_HW),
        "threads": args.threads,
        "rounds": args.rounds,
        "cpu": cpu_model_and_flags()[0],
        "int8_dot_product": has_int8_dot_product(),  # VNNI / AMX: without it int8 runs several times slower
        "models": results,
        "over_plain_ms": {
            name: result["openvino_int8_ms"] / results["plain"]["openvino_int8_ms"]
            for name, result in results.items()
            if name != "plain"
        },
    }
    write_json(args.out, summary)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
