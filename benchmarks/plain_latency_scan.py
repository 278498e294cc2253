"""Where a plain residual net's int8 latency goes at the real-time size: head and tail, blocks, skip (issue 13 item 3).

Item 3 asks for 37.0 dB within 33 ms per 1280x720 output frame in OpenVINO int8 on 2 threads. This times plain
residual nets (:mod:`edgesr.models.plain_resnet`) of several shapes in the same round-robin rounds, each in its
deployed int8 form as the quantize stage builds it (``searched_vs_plain_latency.time_int8``, the
bicubic skip kept as ``quantize.float_modules`` keeps it), on a 640x360 input after ``--settle`` seconds idle.
Latency depends on shapes, not weights, so the nets run with their initial weights. The differences between
shapes give the fixed cost (a net of no blocks: head conv, tail conv, DepthToSpace, input and output), the cost of
one block and of each skip, so the budget's room for blocks follows.

    python benchmarks/plain_latency_scan.py [--shapes 32x0:none 32x0:bicubic 32x3:bicubic ...] [--rounds 30]

A shape is ``<width>x<blocks>:<skip>`` with ``skip`` one of bicubic, bilinear, none.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from searched_vs_plain_latency import LR_HW, time_int8

from edgesr.architectures import PlainResNetConfig
from edgesr.cpu import cpu_model_and_flags, has_int8_dot_product
from edgesr.files import write_json
from edgesr.models.plain_resnet import build_plain_resnet

DEFAULT_SHAPES = ("32x0:none", "32x0:bicubic", "32x3:none", "32x3:bicubic", "32x3:bilinear", "32x4:bicubic")
PARTS = {  # part -> (shape with it, shape without it): the difference of their medians is the part's cost
    "block_ms": ("32x4:bicubic", "32x3:bicubic"),
    "bicubic_skip_ms": ("32x3:bicubic", "32x3:none"),
    "bilinear_skip_ms": ("32x3:bilinear", "32x3:none"),
}


def parse_shape(shape: str) -> PlainResNetConfig:
    """``<width>x<blocks>:<skip>`` as a plain net's configuration; ValueError names the expected form."""
    try:
        size, skip = shape.split(":")
        width, blocks = (int(part) for part in size.split("x"))
        return PlainResNetConfig(width=width, num_blocks=blocks, skip=skip)
    except ValueError as err:
        raise ValueError(f"shape {shape!r} is not <width>x<blocks>:<skip> (e.g. 32x3:bicubic): {err}") from err


def part_costs(results: dict[str, dict]) -> dict[str, float]:
    """The fixed cost (``32x0:none``: head and tail convs, DepthToSpace, input and output) and each of :data:`PARTS`,
    for those whose shapes were timed."""
    ms = {shape: result["openvino_int8_ms"] for shape, result in results.items()}
    costs = {"fixed_ms": ms["32x0:none"]} if "32x0:none" in ms else {}
    costs.update({part: ms[a] - ms[b] for part, (a, b) in PARTS.items() if a in ms and b in ms})
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(DEFAULT_SHAPES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--settle", type=float, default=30.0, help="idle seconds before timing (see latency.py)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu-long/plain_latency_scan.json"))
    args = parser.parse_args()
    try:
        configs = {shape: parse_shape(shape) for shape in args.shapes}
    except ValueError as err:
        parser.error(str(err))

    torch.manual_seed(0)
    models = {shape: build_plain_resnet(cfg, 2).eval() for shape, cfg in configs.items()}
    results = time_int8(models, args.threads, args.rounds, args.settle, "plain shapes")
    write_json(
        args.out,
        {
            "input_hw": list(LR_HW),
            "threads": args.threads,
            "rounds": args.rounds,
            "cpu": cpu_model_and_flags()[0],
            "int8_dot_product": has_int8_dot_product(),
            "models": results,
            "part_costs_ms": part_costs(results),
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
