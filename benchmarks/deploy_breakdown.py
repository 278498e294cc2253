"""Where a deployed int8 model's time goes, node by node, and why narrow convolutions miss their Mult-Adds (not a test).

    .venv/bin/python benchmarks/deploy_breakdown.py --threads 2 --repeats 10

Run after `dvc repro quantize`. For every OpenVINO int8 model of ``deploy.models`` on a 640x360 input
(a 720p output at x2), compiled as the runners compile it (:func:`edgesr.deploy.runtimes.openvino_config`):

- the wall-clock median and the per-node execution times of OpenVINO's profiler (``PERF_COUNT``),
  summed by node type and listed per convolution with its shape, Mult-Adds and achieved GMAC/s;
- the Mult-Adds and time of the convolutions narrower than ``--narrow`` output channels.

Then the *channel staircase*: isolated int8 3x3 convs (:func:`edgesr.deploy.microbench.measure_conv_ms`)
``32 -> c`` and ``c -> 32`` at the same size, which shows what a conv with few channels costs against
its Mult-Adds on this CPU (issue 13 item 1: the S subnet's 1- to 3-channel Mult maps).
Writes ``benchmarks/results/deploy_breakdown.json``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import openvino as ov
from tqdm import tqdm

from edgesr.config import load_params
from edgesr.deploy.microbench import measure_conv_ms
from edgesr.deploy.runtimes import openvino_config
from edgesr.files import write_json
from edgesr.search.latency_table import lr_size

STAIRCASE_CHANNELS = (1, 2, 3, 4, 8, 16, 32)
CONV_TYPES = ("Convolution", "GroupConvolution")


def conv_shapes(model: ov.Model) -> dict[str, dict[str, int]]:
    """Per conv node name: kernel, input and output channels, groups and Mult-Adds at the model's static shape."""
    shapes = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() not in CONV_TYPES:
            continue
        weight = [int(d) for d in op.input(1).get_shape()]
        groups = weight.pop(0) if op.get_type_name() == "GroupConvolution" else 1
        out_per_group, in_per_group, kernel = weight[0], weight[1], weight[2]
        _, c_out, height, width = (int(d) for d in op.output(0).get_shape())
        shapes[op.get_friendly_name()] = {
            "kernel": kernel,
            "c_in": in_per_group * groups,
            "c_out": c_out,
            "groups": groups,
            "mult_adds": height * width * groups * out_per_group * in_per_group * kernel * kernel,
        }
    return shapes


def profile_model(xml: Path, lr_hw: tuple[int, int], threads: int, repeats: int, warmup: int, narrow: int) -> dict:
    """Wall median and per-node profile of one int8 IR at ``lr_hw`` (see the module docstring)."""
    core = ov.Core()
    model = core.read_model(xml)
    model.reshape([1, 3, *lr_hw])
    shapes = conv_shapes(model)
    request = core.compile_model(model, "CPU", openvino_config(threads, profile=True)).create_infer_request()
    lr = np.random.default_rng(0).random((1, 3, *lr_hw), dtype=np.float32)
    wall: list[float] = []
    per_node: dict[tuple[str, str], list[float]] = defaultdict(list)
    for index in range(warmup + repeats):
        start = time.perf_counter()
        request.infer({0: lr})
        if index >= warmup:
            wall.append((time.perf_counter() - start) * 1e3)
            for node in request.get_profiling_info():
                per_node[(node.node_name, node.node_type)].append(node.real_time.total_seconds() * 1e3)
    node_ms = {key: statistics.median(times) for key, times in per_node.items()}
    by_type: dict[str, float] = defaultdict(float)
    for (_, node_type), ms in node_ms.items():
        by_type[node_type] += ms
    convs = []
    for (name, _), ms in node_ms.items():
        if name in shapes and ms > 0:
            convs.append({"node": name, **shapes[name], "ms": ms, "gmac_per_s": shapes[name]["mult_adds"] / ms / 1e6})
    narrow_convs = [conv for conv in convs if conv["c_out"] < narrow and conv["groups"] == 1]
    mult_adds = sum(conv["mult_adds"] for conv in convs)
    return {
        "wall_median_ms": statistics.median(wall),
        "profiled_ms": sum(node_ms.values()),
        "conv_mult_adds": mult_adds,
        "ms_by_node_type": dict(sorted(by_type.items(), key=lambda item: -item[1])),
        f"narrow_convs_below_{narrow}_out": {
            "count": len(narrow_convs),
            "mult_adds_fraction": sum(conv["mult_adds"] for conv in narrow_convs) / mult_adds,
            "ms": sum(conv["ms"] for conv in narrow_convs),
        },
        "convs": sorted(convs, key=lambda conv: -conv["ms"]),
    }


def channel_staircase(lr_hw: tuple[int, int], threads: int, repeats: int, warmup: int) -> list[dict]:
    """Isolated int8 3x3 convs 32 -> c and c -> 32: ms and GMAC/s per channel count."""
    rows = []
    for c_in, c_out in [(32, c) for c in STAIRCASE_CHANNELS] + [(c, 32) for c in STAIRCASE_CHANNELS[:-1]]:
        ms = measure_conv_ms(3, c_in, c_out, lr_hw, threads=threads, precision="int8", repeats=repeats, warmup=warmup)
        mult_adds = 9 * c_in * c_out * lr_hw[0] * lr_hw[1]
        rows.append(
            {"c_in": c_in, "c_out": c_out, "ms": ms, "mult_adds": mult_adds, "gmac_per_s": mult_adds / ms / 1e6}
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--narrow", type=int, default=8, help="a conv with fewer output channels counts as narrow")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/deploy_breakdown.json"))
    args = parser.parse_args()
    params = load_params(args.params)
    lr_hw = lr_size(params.scale)  # a 1280x720 output
    deploy = Path(params.paths.deploy) / "int8"
    missing = [name for name in params.deploy.models if not (deploy / name / "openvino.xml").exists()]
    if missing:
        raise SystemExit(f"no int8 OpenVINO model for {missing} under {deploy}: run `dvc repro quantize` first")
    models = {
        name: profile_model(deploy / name / "openvino.xml", lr_hw, args.threads, args.repeats, args.warmup, args.narrow)
        for name in tqdm(params.deploy.models, desc="models")
    }
    result = {
        "input_hw": list(lr_hw),
        "threads": args.threads,
        "repeats": args.repeats,
        "cpu": platform.processor() or platform.machine(),
        "openvino": ov.get_version(),
        "note": "profiled_ms sums the profiler's per-node times (median per node); it can exceed the wall time",
        "models": models,
        "channel_staircase_3x3_int8": channel_staircase(lr_hw, args.threads, args.repeats, args.warmup),
    }
    write_json(args.out, result)
    for name, model in models.items():
        narrow = model[f"narrow_convs_below_{args.narrow}_out"]
        print(
            f"{name:14s} {model['wall_median_ms']:6.1f} ms, {model['conv_mult_adds'] / 1e9:5.2f} G in convs, "
            f"{narrow['count']} narrow convs: {narrow['mult_adds_fraction']:.0%} of Mult-Adds, {narrow['ms']:.1f} ms"
        )
    for row in result["channel_staircase_3x3_int8"]:
        print(f"3x3 {row['c_in']:2d} -> {row['c_out']:2d}: {row['ms']:5.2f} ms, {row['gmac_per_s']:6.1f} GMAC/s")


if __name__ == "__main__":
    main()
