"""OpenVINO int8 wall-clock of the composed model against its largest branch alone, same images, same run.

    .venv/bin/python benchmarks/compose_latency.py --images 4 --repeats 5

Reads the pipeline's artifacts (the int8 models of the quantize stage, the routers of the compose
stage; run `dvc repro compose` first) and the large photographs of ``compose.large_set`` (SunHays80,
about 1000x770: 720p-class). Per image, interleaved, medians of ``--repeats`` runs after one warm-up,
``deploy.threads`` threads (2 by default):

- ``composed``: the composed model as shipped (router's one pass, each branch once on all its patches
  in chunks of ``compose.chunk``);
- ``one_by_one``: the same composition with one patch per runtime call, as ClassSR's code runs it;
- ``largest``: the largest branch alone on the whole frame.

Per image also the median ms of each step of the composition timed on its own (patch gather, router,
each branch on its patches, overlap average), the counted Mult-Adds of the composed image (% of the
largest branch on the frame and on the same patches) and its class histogram. Results go to ``--out``
(JSON), with the machine's load average before and after (on a shared machine the medians move with it;
the ratios, from alternating runs, less).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from functools import partial
from pathlib import Path

import numpy as np
import openvino as ov

from edgesr.artifacts import deployable_checkpoint
from edgesr.compose.accounting import branch_patch_costs, composed_cost
from edgesr.compose.composed import ComposedModel
from edgesr.compose.deployed import composed_model
from edgesr.compose.grid import blend, extract_patches, patch_grid
from edgesr.compose.settings import ROUTERS
from edgesr.compose.wallclock import compare_wallclock, seconds
from edgesr.config import load_params
from edgesr.data.images import as_input
from edgesr.data.imresize import imresize, modcrop
from edgesr.data.photo_sets import folder_pairs
from edgesr.data.sources import embedded_images
from edgesr.deploy.runners import deployed_runner
from edgesr.errors import UsageError
from edgesr.train.restore import trained_model


def _breakdown(composed: ComposedModel, image: np.ndarray, names: list[str], repeats: int) -> dict[str, float]:
    """Median ms of each step of :meth:`ComposedModel.compose` on ``image``, each timed on its own."""
    grid = patch_grid(image.shape[2], image.shape[3], composed.patch, composed.stride)
    patches = extract_patches(image[0], grid)
    routes = composed.router.route(patches, image, grid)
    composed.compose(image)  # warm-up
    steps = {
        "extract": lambda: extract_patches(image[0], grid),
        "route": lambda: composed.router.route(patches, image, grid),
    }
    for index, (name, branch) in enumerate(zip(names, composed.branches, strict=True)):
        chosen = patches[routes == index]
        if len(chosen):
            steps[f"branch {name} ({len(chosen)} patches)"] = partial(branch, chosen)
    sp = composed.scale * composed.patch
    outputs = np.zeros((len(grid), 3, sp, sp), dtype=np.float32)
    steps["blend"] = lambda: blend(outputs, grid, composed.scale)
    return {step: 1e3 * float(np.median([seconds(run) for _ in range(repeats)])) for step, run in steps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--profile")
    parser.add_argument("--router", choices=ROUTERS, default=None, help="default: compose.router")
    parser.add_argument("--runtime", default="openvino", choices=("openvino", "onnxruntime"))
    parser.add_argument("--images", type=int, default=4, help="evenly spaced images of compose.large_set")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compose_latency.json"))
    args = parser.parse_args()

    params = load_params(args.params, args.profile)
    cfg = params.compose
    if cfg.large_set is None:
        raise UsageError("compose.large_set is null: name a quantize.photo_sets entry of large photographs")
    names = params.compose_branches()
    models = [trained_model(deployable_checkpoint(params, name), params.scale) for name in names]
    costs = branch_patch_costs(models, params.scale, cfg.patch)
    largest = int(np.argmax(costs))
    largest_model = models[largest]
    folder = Path(params.quantize.photo_sets[cfg.large_set])
    if folder.is_dir():
        images = [lr for _, lr, _ in folder_pairs(folder, params.scale, args.images)]
    else:  # a fresh checkout without ../shared: the photographs shipped in scikit-image / scikit-learn
        print(f"{folder} not found: timing the embedded photographs instead")
        images = [imresize(modcrop(rgb, params.scale), 1 / params.scale) for _, rgb in embedded_images()]
    composed = composed_model(params, args.runtime, "int8", args.router)
    one_by_one_params = params.model_copy(update={"compose": cfg.model_copy(update={"chunk": 1})})
    one_by_one = composed_model(one_by_one_params, args.runtime, "int8", args.router)
    alone = deployed_runner(params, names[largest], args.runtime, "int8")
    load_before = os.getloadavg()[0]
    timed = compare_wallclock(composed, alone, images, args.repeats)
    naive = compare_wallclock(one_by_one, alone, images, args.repeats)
    for row, naive_row, lr in zip(timed["images"], naive["images"], images, strict=True):
        result = composed.compose(as_input(lr))
        cost = composed_cost(
            result.routes, costs, composed.router.mult_adds(result.grid), largest_model, result.grid, params.scale
        )
        row |= {
            "breakdown_ms": _breakdown(composed, as_input(lr), names, args.repeats),
            "one_by_one_s": naive_row["composed_s"],
            "one_by_one_ratio": naive_row["ratio"],
            "histogram": result.histogram(len(names)),
            **{k: v for k, v in cost.as_dict().items() if k.startswith("percent")},
        }
    report = {
        "branches": names,
        "largest": names[largest],
        "router": args.router or cfg.router,
        "runtime": args.runtime,
        "precision": "int8",
        "threads": params.deploy.threads,
        "patch": cfg.patch,
        "stride": cfg.stride,
        "chunk": cfg.chunk,
        "repeats": args.repeats,
        "openvino": ov.__version__,
        "cpu": platform.processor() or platform.machine(),
        "load_average_1min": [load_before, os.getloadavg()[0]],  # before / after: a shared machine's timings vary
        "median_ratio": timed["median_ratio"],
        "median_one_by_one_ratio": naive["median_ratio"],
        "images": timed["images"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{'LR HxW':>10}{'composed ms':>13}{'1-by-1 ms':>11}{names[largest] + ' ms':>16}{'ratio':>7}"
        f"{'%L frame':>10}{'%L patches':>12}  histogram"
    )
    for row in timed["images"]:
        print(
            f"{row['lr_hw'][0]:>5}x{row['lr_hw'][1]:<4}{1e3 * row['composed_s']:>13.1f}"
            f"{1e3 * row['one_by_one_s']:>11.1f}"
            f"{1e3 * row['largest_s']:>16.1f}{row['ratio']:>7.2f}{row['percent_of_largest_frame']:>10.1f}"
            f"{row['percent_of_largest_patches']:>12.1f}  {row['histogram']}"
        )
    print(
        f"median composed / {names[largest]}: {timed['median_ratio']:.2f} (one patch per call: "
        f"{naive['median_ratio']:.2f}); wrote {args.out}"
    )


if __name__ == "__main__":
    main()
