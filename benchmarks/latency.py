"""Deployed models side by side: PyTorch eager fp32, ONNX Runtime fp32/int8, OpenVINO fp32/int8 (not a test).

    .venv/bin/python benchmarks/latency.py --threads 2 --repeats 10

Run after `dvc repro quantize`. For each ``deploy.models`` entry and a 1280/s x 720/s input (640x360 at
x2, a 720p output): median latency over ``--repeats`` round-robin rounds on ``--threads`` threads (every
model and runtime, and the peak conv, runs once per round, so a slow phase of a shared machine hits them
alike: timed one model after another, XLSR int8 once read 24.6 ms, 17.9 ms when timed beside S), the ratio
to PyTorch eager measured in the same rounds, and the achieved GMAC/s against a measured int8 peak of this
CPU (a large dense int8 convolution in OpenVINO, quantized by the same NNCF path). Also the peak memory (RSS)
of ``edgesr upscale`` making a 12 MP (4000x3000) output, in a child process, and the largest
difference between tiled and whole-image fp32 output on a real image. Waits ``--settle`` seconds idle
first: on a 2-core VM, models timed right after `dvc repro` ran up to 1.4x slow (issue 13). Writes
``benchmarks/results/latency.json`` and ``latency.png``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from edgesr.artifacts import deployable_checkpoint
from edgesr.complexity import count_complexity
from edgesr.config import load_params
from edgesr.data.images import load_rgb8, save_png
from edgesr.data.prepare import available_benchmarks, load_pairs
from edgesr.deploy.export import export_onnx, export_openvino
from edgesr.deploy.runners import deployed_runner
from edgesr.deploy.runtimes import Runner, openvino_runner
from edgesr.deploy.tiling import upscale_tiled
from edgesr.files import write_json
from edgesr.plots import save_latency_bars
from edgesr.quant.openvino_ptq import quantize_openvino
from edgesr.search.network_latency import time_round_robin
from edgesr.train.restore import trained_model

VARIANTS = [
    ("torch", "fp32"),
    ("onnxruntime", "fp32"),
    ("onnxruntime", "int8"),
    ("openvino", "fp32"),
    ("openvino", "int8"),
]
REFERENCE = "torch/fp32"
PEAK_CONV = (256, (90, 160))  # channels, LR size: a 3x3 conv of 8.5 G MACs


def int8_peak_runners(threads: int, folder: Path) -> tuple[int, dict[str, Runner]]:
    """MACs of one large dense 3x3 convolution and its OpenVINO fp32 and NNCF int8 runners, each on its own input."""
    channels, (height, width) = PEAK_CONV
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).eval()
    conv.num_in_ch = channels  # the export example input follows the uniform model surface attribute
    x = np.random.default_rng(0).random((1, channels, height, width), dtype=np.float32)
    ir = export_openvino(export_onnx(conv, folder / "conv.onnx"), folder)["fp32"]
    int8 = quantize_openvino(ir, [x], folder / "int8" / "conv.xml")
    runners = {name: openvino_runner(path, threads) for name, path in (("fp32", ir), ("int8", int8))}
    return channels * channels * 9 * height * width, {name: partial(_on, runner, x) for name, runner in runners.items()}


def _on(runner: Runner, x: np.ndarray, _: np.ndarray) -> np.ndarray:
    """``runner`` on its own input ``x`` whatever it is given (the peak conv in the models' timing rounds)."""
    return runner(x)


def upscale_memory(params_path: Path, scale: int, output_hw: tuple[int, int]) -> dict[str, float]:
    """Peak RSS of a child process running ``edgesr upscale`` (defaults: OpenVINO int8, tiled) to ``output_hw``.

    The peak is the child's own address space's (``VmHWM``): ``ru_maxrss`` keeps the high-water mark of the
    memory the child was forked with, so it read the benchmark's own 4.7 GB of loaded models as the upscale's.
    """
    height, width = output_hw[0] // scale, output_hw[1] // scale
    probe = (
        "import sys\nfrom edgesr.cli import main\nrc = main(sys.argv[1:])\n"
        "print('peak_rss_kb', next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))\n"
        "sys.exit(rc)"
    )
    with tempfile.TemporaryDirectory() as folder:
        # a real photo repeated to the size: content matters little for time and not for memory
        tile = load_rgb8(next(Path("data/prepared").rglob("*.png")))
        reps = (height // tile.shape[0] + 1, width // tile.shape[1] + 1, 1)
        save_png(Path(folder) / "big.png", np.tile(tile, reps)[:height, :width], compress_level=1)
        start = time.perf_counter()
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                probe,
                "upscale",
                f"{folder}/big.png",
                "-o",
                f"{folder}/out.png",
                "--params",
                str(params_path),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        seconds = time.perf_counter() - start
        written = load_rgb8(Path(folder) / "out.png").shape
    peak_kb = int(next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("peak_rss_kb")))
    return {"input_hw": [height, width], "output_hwc": list(written), "peak_rss_mb": peak_kb / 1024, "seconds": seconds}


def tiled_vs_whole(params, name: str, threads: int) -> dict[str, object]:
    """Max |tiled - one window| (uint8 levels) of OpenVINO fp32 on the largest benchmark image, default tiling."""
    prepared = Path(params.paths.prepared)
    sets = available_benchmarks(prepared) or ["val"]
    image, lr, _ = max((p for s in sets for p in load_pairs(prepared, s, params.scale)), key=lambda p: p[1].size)
    runner = deployed_runner(params, name, "openvino", "fp32")
    cfg = params.deploy
    whole = upscale_tiled(runner, lr, params.scale, max(lr.shape), cfg.overlap, border=cfg.border).astype(int)
    tiled = upscale_tiled(runner, lr, params.scale, cfg.tile, cfg.overlap, border=cfg.border).astype(int)
    return {
        "model": name,
        "image": image,
        "lr_hw": list(lr.shape[:2]),
        "tile": params.deploy.tile,
        "overlap": params.deploy.overlap,
        "max_abs_diff": int(np.abs(tiled - whole).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10, help="round-robin rounds (each runner once per round)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/latency.json"))
    parser.add_argument("--settle", type=float, default=45.0, help="idle seconds before the timing rounds")
    args = parser.parse_args()

    params = load_params(args.params)
    params = params.model_copy(update={"deploy": params.deploy.model_copy(update={"threads": args.threads})})
    output_hw = (720, 1280)
    input_hw = (output_hw[0] // params.scale, output_hw[1] // params.scale)
    x = np.random.default_rng(0).random((1, 3, *input_hw), dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        peak_macs, runners = int8_peak_runners(args.threads, Path(folder))
        macs = {}
        for name in params.deploy.models:
            model = trained_model(deployable_checkpoint(params, name), params.scale)
            macs[name] = count_complexity(model, params.scale, output_hw).mult_adds
            for runtime, precision in VARIANTS:
                runners[f"{name} {runtime}/{precision}"] = deployed_runner(
                    params, name, runtime, precision, checked=False
                )
        # every runner once per round, so drift on a shared machine hits every model and runtime alike
        timed = time_round_robin(list(runners.values()), x, args.repeats, args.warmup, "timing", args.settle)
        medians = dict(zip(runners, timed, strict=True))
    peak = {"macs": peak_macs, "input": [1, PEAK_CONV[0], *PEAK_CONV[1]]}
    for precision in ("fp32", "int8"):
        ms = medians[precision]
        peak[f"{precision}_ms"], peak[f"{precision}_gmac_per_s"] = ms, peak_macs / 1e9 / (ms / 1e3)
    rows = {}
    for name in params.deploy.models:
        row: dict[str, object] = {"mult_adds": macs[name]}
        for runtime, precision in VARIANTS:
            ms = medians[f"{name} {runtime}/{precision}"]
            row[f"{runtime}/{precision}"] = {"median_ms": ms, "gmac_per_s": macs[name] / 1e9 / (ms / 1e3)}
        for value in row.values():
            if isinstance(value, dict):
                value["speedup_vs_torch"] = row[REFERENCE]["median_ms"] / value["median_ms"]
                value["fraction_of_int8_peak"] = value["gmac_per_s"] / peak["int8_gmac_per_s"]
        rows[name] = row

    result = {
        "scale": params.scale,
        "input_hw": list(input_hw),
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "load_average_1_5_15_min": list(os.getloadavg()),  # other work on a shared machine inflates times
        "note": "torch/fp32 is PyTorch eager on the BatchNorm-folded model; OpenVINO with INFERENCE_PRECISION_HINT f32",
        "int8_peak": peak,
        "models": rows,
        "upscale_12mp": upscale_memory(args.params, params.scale, (3000, 4000)),
        "tiled_vs_whole": tiled_vs_whole(params, params.deploy.default_model, args.threads),
    }
    write_json(args.out, result)
    save_latency_bars(
        {name: {k: v["median_ms"] for k, v in row.items() if isinstance(v, dict)} for name, row in rows.items()},
        f"{input_hw[1]}x{input_hw[0]} input, {args.threads} threads",
        args.out.with_suffix(".png"),
    )
    print(
        f"int8 peak (OpenVINO 3x3 conv {PEAK_CONV[0]} ch): {peak['int8_gmac_per_s']:.1f} GMAC/s "
        f"(fp32 {peak['fp32_gmac_per_s']:.1f})"
    )
    print(f"{'model':<14}" + "".join(f"{f'{r}/{p}':>20}" for r, p in VARIANTS))
    for name, row in rows.items():
        cells = "".join(
            f"{row[f'{r}/{p}']['median_ms']:>8.1f}ms x{row[f'{r}/{p}']['speedup_vs_torch']:<5.1f}"
            f"{row[f'{r}/{p}']['gmac_per_s']:>5.0f}"
            for r, p in VARIANTS
        )
        print(f"{name:<14}{cells}")
    print(f"upscale 12 MP: {result['upscale_12mp']}")
    print(f"tiled vs whole: {result['tiled_vs_whole']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
