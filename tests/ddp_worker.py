"""A tiny training run, shared by tests/test_trainer.py and its ``torchrun`` DDP test.

Run as ``python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py OUT_DIR
[--model tiny|sam_sr] [--interrupt-at N] [--lr LR]``: every process builds the same model and data from
fixed seeds and does what a training stage does (:func:`resumed_run`): rank 0 decides whether to resume
the run in ``OUT_DIR``, and every process prints the decision it got (``rank R: STATE``) and calls
:func:`edgesr.train.trainer.train`, which writes ``OUT_DIR/last.pt`` from rank 0.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgesr.architectures import SAMSRConfig
from edgesr.data.patches import PatchSampler
from edgesr.models import build_model
from edgesr.tracker import Tracker
from edgesr.train.distributed import distributed_context
from edgesr.train.run import keep_only_an_unfinished_run
from edgesr.train.settings import TrainConfig
from edgesr.train.trainer import TrainResult, train

SCALE = 2
DDP_CONFIG: dict[str, Any] = {"iterations": 6, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 3, "val_every": 3}


class Interrupted(Exception):
    """Raised by :func:`interrupt_at` to stop a run the way a crash or Ctrl-C would."""


def interrupt_at(iteration: int) -> Callable[[int], None]:
    """An ``on_iteration`` callback that stops the run after ``iteration`` completed iterations."""

    def callback(done: int) -> None:
        if done == iteration:
            raise Interrupted(f"stopped after iteration {done}")

    return callback


def tiny_model(seed: int = 0) -> nn.Module:
    """conv 3->8, ReLU, conv 8->3 s^2, PixelShuffle(s): about 0.9K parameters."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 3 * SCALE * SCALE, 3, padding=1),
        nn.PixelShuffle(SCALE),
    )


def tiny_sam_sr(seed: int = 0) -> nn.Module:
    """SAM_SR with one body block of width 8: BatchNorm in every block, about 1.5K parameters."""
    torch.manual_seed(seed)
    return build_model(SAMSRConfig(nf=8, num_blocks=1), SCALE)


MODELS: dict[str, Callable[[], nn.Module]] = {"tiny": tiny_model, "sam_sr": tiny_sam_sr}


def smooth_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random smooth uint8 RGB image: bilinear upsampling of a coarse random grid."""
    coarse = torch.from_numpy(rng.random((1, 3, max(2, height // 6), max(2, width // 6)), dtype=np.float32))
    fine = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    return (fine.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def downscale(hr: np.ndarray) -> np.ndarray:
    """Box-filter LR of an HR image (a stand-in for MATLAB bicubic; alignment is all the tests need)."""
    h, w = hr.shape[0] // SCALE, hr.shape[1] // SCALE
    blocks = hr[: h * SCALE, : w * SCALE].reshape(h, SCALE, w, SCALE, 3).astype(np.float64)
    return blocks.mean(axis=(1, 3)).round().astype(np.uint8)


def tiny_data(seed: int = 0) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[str, np.ndarray, np.ndarray]]]:
    """Three training pairs of different sizes and two validation images, as (LR, HR) uint8 arrays."""
    rng = np.random.default_rng(seed)
    train_hr = [smooth_image(rng, h, w) for h, w in ((32, 40), (40, 32), (48, 48))]
    val_hr = [smooth_image(rng, h, w) for h, w in ((24, 32), (32, 24))]
    return (
        [(downscale(hr), hr) for hr in train_hr],
        [(f"val{i}", downscale(hr), hr) for i, hr in enumerate(val_hr)],
    )


def tiny_config(**overrides: Any) -> TrainConfig:
    """A few-second CPU run: 8x8 LR patches, cosine schedule, L1 loss."""
    settings: dict[str, Any] = {
        "iterations": 20,
        "batch_size": 4,
        "lr_patch": 8,
        "lr": 5e-3,
        "val_every": 5,
        "checkpoint_every": 5,
        "log_every": 2,
        "seed": 3,
        "device": "cpu",
    }
    return TrainConfig(**(settings | overrides))


def run(
    out_dir: Path,
    *,
    model: str = "tiny",
    tracker: Tracker | None = None,
    on_iteration: Callable[[int], None] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Train ``MODELS[model]`` on the tiny data with :func:`tiny_config` ``(**overrides)`` into ``out_dir``."""
    cfg = tiny_config(**overrides)
    train_pairs, val_pairs = tiny_data()
    sampler = PatchSampler(train_pairs, SCALE, cfg.lr_patch, cfg.seed)
    return train(
        MODELS[model](),
        sampler,
        val_pairs,
        cfg,
        SCALE,
        out_dir,
        tracker=tracker,
        metadata={"model": model, "scale": SCALE},
        on_iteration=on_iteration,
    )


def resumed_run(out_dir: Path, model: str, interrupt: int | None, **overrides: Any) -> None:
    """What a training stage does (:func:`edgesr.train.run.recorded_run`, without MLflow): rank 0 keeps
    only an unfinished run in ``out_dir`` and tells the others; then every process trains."""
    cfg = tiny_config(**overrides)
    with distributed_context(cfg.device) as ctx:
        metadata = {"model": model, "scale": SCALE}
        state = keep_only_an_unfinished_run(out_dir, model, cfg, SCALE, metadata, ctx)
        print(f"rank {ctx.rank}: {state}", flush=True)
        run(out_dir, model=model, on_iteration=interrupt_at(interrupt) if interrupt else None, **overrides)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--model", choices=MODELS, default="tiny")
    parser.add_argument("--interrupt-at", type=int)
    parser.add_argument("--lr", type=float, default=DDP_CONFIG["lr"])
    args = parser.parse_args()
    resumed_run(args.out_dir, args.model, args.interrupt_at, **(DDP_CONFIG | {"lr": args.lr}))
