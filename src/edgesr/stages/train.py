"""Stage ``train@<name>``: train one zoo model of ``params.models`` at ``params.scale``.

Writes ``<paths.models>/<name>/{best,last}.pt`` and ``history.json``, ``metrics/train/<name>.json``,
``plots/train/<name>.csv`` (DVC plot of the loss curve) and logs the run to MLflow with the training
curves and LR-bicubic / SR / HR sample crops. Under ``torchrun`` only rank 0 records anything.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from edgesr.config import ConfigError, Params, params_hash
from edgesr.data.bicubic_baseline import bicubic_upscale
from edgesr.data.patches import PatchSampler
from edgesr.data.prepare import load_pairs
from edgesr.files import write_json, write_text
from edgesr.inference import super_resolve
from edgesr.models import build_model
from edgesr.plots import save_side_by_side, save_training_curves
from edgesr.stages import data_hash
from edgesr.tracker import Tracker
from edgesr.tracking import stage_run
from edgesr.train.settings import TrainConfig
from edgesr.train.trainer import TrainResult, checkpoint_state, load_model_weights, train


def _loss_csv(history: list[dict]) -> str:
    """The training curve as CSV (iteration, loss, val_psnr) for ``dvc plots``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["iteration", "loss", "val_psnr"])
    for row in history:
        val = row.get("val_psnr")
        writer.writerow([row["iteration"], row.get("loss", ""), "" if val is None else val])
    return buffer.getvalue()


def _log_results(
    params: Params, name: str, root: Path, result: TrainResult, tracker: Tracker, model: nn.Module, val_pairs: list
) -> None:
    """Metrics files, curves and sample crops for one finished training run."""
    root_metrics = root / params.paths.metrics
    write_json(
        root_metrics / "train" / f"{name}.json",
        {
            "best_val_psnr_y": result.best_psnr,
            "best_iteration": result.best_iteration,
            "iterations": result.final_iteration,
        },
    )
    write_text(root / params.paths.plots / "train" / f"{name}.csv", _loss_csv(result.history))
    out_dir = root / params.paths.models / name
    curves = save_training_curves(result.history, f"{name} x{params.scale}", out_dir / "training_curves.png")
    tracker.log_artifact(curves, "plots")
    load_model_weights(model, result.best_checkpoint)
    image_name, lr, hr = val_pairs[0]
    crops = save_side_by_side(
        bicubic_upscale(lr, params.scale),
        super_resolve(model, lr, next(model.parameters()).device),  # the trainer may have moved it to CUDA
        hr,
        params.tracking.sample_crop,
        f"{name} x{params.scale}: {image_name}",
        out_dir / "sample_crops.png",
    )
    tracker.log_artifact(crops, "samples")
    tracker.log_metrics({"best/val_psnr_y": result.best_psnr, "best/iteration": result.best_iteration})


def _keep_only_an_unfinished_run(
    out_dir: Path, name: str, cfg: TrainConfig, scale: int, metadata: dict[str, object], is_main: bool
) -> None:
    """Decide what to do with the ``last.pt`` that DVC kept (``persist: true``).

    DVC reruns this stage only when something it tracks changed or the last run did not finish. So
    an unfinished run with the same settings and data is resumed; anything else (other settings or
    data, or a finished run, which means code changed) is removed and trained again from scratch.
    """
    state = checkpoint_state(out_dir, cfg, scale, metadata)
    if state == "unfinished":
        print(f"{name}: resuming the interrupted run from {out_dir / 'last.pt'}")
        return
    if state != "absent":
        reason = "was written under other settings or data" if state == "other-settings" else "is a finished run"
        print(f"{name}: {out_dir / 'last.pt'} {reason}; training from scratch")
        if is_main:
            shutil.rmtree(out_dir)


def run(params: Params, name: str, root: Path = Path(".")) -> TrainResult:
    """Train ``params.models[name]``; resumes an interrupted run, retrains anything else from scratch."""
    if name not in params.models:
        raise ConfigError(f"no model '{name}' in params.yaml `models`; known: {', '.join(params.models)}")
    model_cfg = params.models[name].arch
    train_cfg = params.train_config(name)
    prepared = root / params.paths.prepared
    torch.manual_seed(train_cfg.seed)  # the initial weights: a rerun of the stage reproduces the run
    model = build_model(model_cfg, params.scale)
    train_pairs = load_pairs(prepared, "train", params.scale)
    val_pairs = load_pairs(prepared, "val", params.scale)
    sampler = PatchSampler([(lr, hr) for _, lr, hr in train_pairs], params.scale, train_cfg.lr_patch, train_cfg.seed)
    out_dir = root / params.paths.models / name
    metadata = {
        "name": name,
        "scale": params.scale,
        "model": model_cfg.model_dump(mode="json"),
        "data_hash": data_hash(prepared),
    }
    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 records anything
    _keep_only_an_unfinished_run(out_dir, name, train_cfg, params.scale, metadata, is_main)
    if not is_main:
        return train(model, sampler, val_pairs, train_cfg, params.scale, out_dir, metadata=metadata)
    stage_params = {"model": metadata["model"], "train": train_cfg.model_dump(mode="json"), "scale": params.scale}
    with stage_run(
        f"train@{name}",
        experiment=params.tracking.experiment,
        params=stage_params,
        params_hash=params_hash(stage_params),
        data_hash=metadata["data_hash"],
        root=root,
    ) as tracker:
        result = train(model, sampler, val_pairs, train_cfg, params.scale, out_dir, tracker=tracker, metadata=metadata)
        _log_results(params, name, root, result, tracker, model, val_pairs)
    return result
