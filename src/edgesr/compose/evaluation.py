"""Quality, cost, class histogram and seams of every routing of the composed model on a set of images.

For each image the branches run once on all patches of the grid (:mod:`edgesr.compose.grid`); every
routing (ClassSR's classifier, ARM's edge router at each ``eta``, each branch alone) then only picks one
output per patch and averages the overlaps. This gives exactly what :meth:`ComposedModel.compose`
gives for that routing (each patch's output does not depend on the others) at the cost of one
evaluation instead of one per routing. PSNR-Y / SSIM-Y follow DESIGN.md (``scale`` border cropped).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import nn
from tqdm import tqdm

from edgesr.compose.accounting import composed_cost
from edgesr.compose.composed import Router
from edgesr.compose.grid import blend, extract_patches, patch_grid
from edgesr.compose.runners import BatchRunner
from edgesr.compose.seams import seam_error
from edgesr.data.images import as_image, as_input
from edgesr.errors import UsageError
from edgesr.metrics import psnr_y, ssim_y

__all__ = ["evaluate_routings"]

Pairs = Sequence[tuple[str, np.ndarray, np.ndarray]]


def evaluate_routings(
    pairs: Pairs,
    branches: Sequence[BatchRunner],
    routers: Mapping[str, Router],
    patch_costs: Sequence[int],
    largest: nn.Module,
    scale: int,
    patch: int,
    stride: int,
    desc: str | None = None,
) -> dict[str, dict]:
    """Per routing: mean PSNR-Y, SSIM-Y, Mult-Adds (both conventions, :mod:`edgesr.compose.accounting`),
    summed class histogram over the (name, LR, HR) ``pairs``, and the worst image's seam ratio and border
    step excess (:func:`~edgesr.compose.seams.seam_error`: composed vs each branch alone where branches meet)."""
    per_image: dict[str, list[dict]] = {name: [] for name in routers}
    for name, lr, hr in tqdm(pairs, desc=desc, unit="image", leave=False, disable=desc is None):
        if min(lr.shape[:2]) < patch:
            raise UsageError(
                f"{name} is {lr.shape[0]}x{lr.shape[1]} LR pixels, under the {patch}-pixel patch; "
                "lower compose.patch or leave the image out"
            )
        image = as_input(lr)
        grid = patch_grid(lr.shape[0], lr.shape[1], patch, stride)
        patches = extract_patches(image[0], grid)
        outputs = np.stack([branch(patches) for branch in branches])  # (M, N, 3, sp, sp)
        alone = [as_image(blend(output, grid, scale)) for output in outputs]  # each branch, tiled the same way
        for routing, router in routers.items():
            routes = np.asarray(router.route(patches, image, grid), dtype=np.int64)
            sr = as_image(blend(outputs[routes, np.arange(len(grid))], grid, scale))
            cost = composed_cost(routes, patch_costs, router.mult_adds(grid), largest, grid, scale)
            seams = seam_error(sr, hr, alone, grid, routes, scale)
            per_image[routing].append(
                {
                    "psnr": psnr_y(sr, hr, scale),
                    "ssim": ssim_y(sr, hr, scale),
                    "histogram": np.bincount(routes, minlength=len(branches)),
                    "seam_ratio": seams["ratio"],
                    "seam_step": seams["step_excess"],
                    **cost.as_dict(),
                }
            )
    return {routing: _summary(images) for routing, images in per_image.items()}


def _summary(images: list[dict]) -> dict:
    histogram = np.sum([image["histogram"] for image in images], axis=0)
    ratios = [image["seam_ratio"] for image in images if image["seam_ratio"] is not None]
    steps = [image["seam_step"] for image in images if image["seam_step"] is not None]
    keys = ("psnr", "ssim", "percent_of_largest_frame", "percent_of_largest_patches", "total", "router")
    summary = {key: float(np.mean([image[key] for image in images])) for key in keys}
    return summary | {
        "histogram": histogram.tolist(),
        "shares": (histogram / histogram.sum()).tolist(),
        "seam_ratio": float(np.max(ratios)) if ratios else None,
        "seam_step": float(np.max(steps)) if steps else None,
    }
