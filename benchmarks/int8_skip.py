"""The bicubic skip in OpenVINO int8: kept in float against run in int8 on exact taps, side by side (issue 13).

Both int8 models come from the deployed fp32 IR and the quantize stage's own calibration patches; they
differ only in the skip: ``float`` keeps its nodes and its ``Add`` in float
(:func:`edgesr.quant.layers.float_module_nodes`, what ONNX Runtime ships), ``int8_exact`` runs it as a dense
conv on taps NNCF keeps exactly with only its ``Add`` in float (:mod:`edgesr.quant.exact_skip`, what OpenVINO
ships). Each is checked against the fp32 model as the stage checks it (PSNR-Y drop, stress suite, flat
images), and timed on a 640x360 input in round-robin rounds (median per model), so machine drift hits both
alike, after ``--settle`` seconds idle (right after the checks both read about 25 % slow).

    python benchmarks/int8_skip.py [--model fgnas_S_x2] [--rounds 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import onnx

from edgesr.artifacts import deployed_file
from edgesr.config import load_params
from edgesr.data.prepare import load_pairs
from edgesr.data.stress import stress_images
from edgesr.deploy.runtimes import openvino_runner
from edgesr.deploy.tiling import upscale_tiled
from edgesr.files import write_json
from edgesr.quant.layers import float_module_nodes, openvino_ignored_scope, openvino_skip_nodes
from edgesr.quant.openvino_ptq import quantize_openvino
from edgesr.quant.verify import verify_int8
from edgesr.search.network_latency import time_round_robin
from edgesr.stages.quantize import stage_calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model", default="fgnas_S_x2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--settle", type=float, default=45.0, help="idle seconds before timing (see latency.py)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8_skip.json"))
    args = parser.parse_args()

    params = load_params(args.params)
    prepared, deploy_root, cfg = Path(params.paths.prepared), Path(params.paths.deploy), params.quantize
    fp32 = deployed_file(deploy_root, args.model, "openvino", "fp32")
    proto = onnx.load(deployed_file(deploy_root, args.model, "onnxruntime", "fp32"))
    variants = {
        "float": (float_module_nodes(proto, cfg.float_modules), []),
        "int8_exact": openvino_skip_nodes(proto, cfg.float_modules),
    }
    calibration = stage_calibration(params, prepared)
    sets = {name: load_pairs(prepared, name, params.scale) for name in ("Set5", "Set14")}
    deploy = params.deploy
    upscale = partial(upscale_tiled, scale=params.scale, tile=deploy.tile, overlap=deploy.overlap, border=deploy.border)
    results: dict[str, dict] = {}
    runners = {}
    reference = openvino_runner(fp32, args.threads)
    with tempfile.TemporaryDirectory(prefix="edgesr-int8-skip-") as folder:
        for tag, (floats, exact) in variants.items():
            int8 = quantize_openvino(
                fp32, calibration, Path(folder) / tag / "openvino.xml", openvino_ignored_scope(floats), exact
            )
            runners[tag] = openvino_runner(int8, args.threads)
            check = verify_int8(
                reference,
                runners[tag],
                sets,
                stress_images(),
                params.scale,
                upscale,
                cfg.limits,
            )
            results[tag] = {
                "float_nodes": floats,
                "exact_convs": list(exact),
                "drop_db": {name: check["sets"][name]["drop"] for name in sets},
                "int8_worst_flat": check["stress_summary"]["int8_worst_flat"],
                "failures": check["failures"],
            }
    x = np.random.default_rng(0).random((1, 3, 360, 640), dtype=np.float32)
    medians = time_round_robin(list(runners.values()), x, args.rounds, 3, "timing", settle_s=args.settle)
    for tag, median in zip(runners, medians, strict=True):
        results[tag]["median_ms"] = median
    summary = {
        "model": args.model,
        "input_hw": [360, 640],
        "threads": args.threads,
        "rounds": args.rounds,
        "cpu": platform.processor() or platform.machine(),
        "variants": results,
        "speedup": results["float"]["median_ms"] / results["int8_exact"]["median_ms"],
    }
    write_json(args.out, summary)
    for tag, result in results.items():
        drops = " / ".join(f"{value:.3f}" for value in result["drop_db"].values())
        flat = result["int8_worst_flat"]
        print(
            f"{tag:11s} {result['median_ms']:6.2f} ms  drop Set5 / Set14 {drops} dB  "
            f"worst flat {flat['image']} {flat['mean_abs']:.2f} / {flat['max_abs']:.0f}"
        )
    print(f"skip in int8: x{summary['speedup']:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
