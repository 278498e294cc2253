"""Stage ``train@<name>``: train one zoo model of ``params.models`` at ``params.scale``.

Writes ``<paths.models>/<name>/{best,last}.pt`` and ``history.json``, ``metrics/train/<name>.json``,
``plots/train/<name>.csv`` (DVC plot of the loss curve) and logs the run to MLflow with the training
curves and LR-bicubic / SR / HR sample crops. Under ``torchrun`` only rank 0 records anything.
:func:`train_one` is the shared recipe; FGNAS's ``retrain`` stage uses it for the searched subnets.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from edgesr.config import ConfigError, Params, params_hash
from edgesr.data.bicubic_baseline import bicubic_upscale
from edgesr.data.patches import PatchSampler
from edgesr.data.prepare import load_pairs
from edgesr.files import write_json, write_text
from edgesr.inference import super_resolve
from edgesr.models import ModelConfig, build_model
from edgesr.plots import save_side_by_side, save_training_curves
from edgesr.stages import data_hash
from edgesr.tracker import Tracker
from edgesr.tracking import stage_run
from edgesr.train.settings import TrainConfig
from edgesr.train.trainer import TrainResult, checkpoint_state, load_model_weights, train


def history_csv(history: list[dict], columns: tuple[str, ...] = ("loss", "val_psnr")) -> str:
    """A training curve as CSV (iteration, then ``columns``; blank where absent) for ``dvc plots``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["iteration", *columns])
    for row in history:
        writer.writerow([row["iteration"], *("" if row.get(c) is None else row[c] for c in columns)])
    return buffer.getvalue()


@dataclass(frozen=True)
class TrainingRun:
    """One model trained by the shared recipe: a zoo ``train@<name>`` or an FGNAS ``retrain@<size>-<scale>``.

    Paths are relative to the project root.
    """

    stage: str
    name: str
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    scale: int
    prepared: Path
    out_dir: Path
    metrics_file: Path
    plot_file: Path
    experiment: str
    sample_crop: int


def _log_results(
    run: TrainingRun, root: Path, result: TrainResult, tracker: Tracker, model: nn.Module, val_pairs: list
) -> None:
    """Metrics files, curves and sample crops for one finished training run."""
    title = f"{run.name} x{run.scale}"
    write_json(
        root / run.metrics_file,
        {
            "best_val_psnr_y": result.best_psnr,
            "best_iteration": result.best_iteration,
            "iterations": result.final_iteration,
        },
    )
    write_text(root / run.plot_file, history_csv(result.history))
    out_dir = root / run.out_dir
    curves = save_training_curves(result.history, title, out_dir / "training_curves.png")
    tracker.log_artifact(curves, "plots")
    load_model_weights(model, result.best_checkpoint)
    image_name, lr, hr = val_pairs[0]
    crops = save_side_by_side(
        bicubic_upscale(lr, run.scale),
        super_resolve(model, lr, next(model.parameters()).device),  # the trainer may have moved it to CUDA
        hr,
        run.sample_crop,
        f"{title}: {image_name}",
        out_dir / "sample_crops.png",
    )
    tracker.log_artifact(crops, "samples")
    tracker.log_metrics({"best/val_psnr_y": result.best_psnr, "best/iteration": result.best_iteration})


def keep_only_an_unfinished_run(
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


@contextmanager
def recorded_run(
    stage: str,
    out_dir: Path,
    cfg: TrainConfig,
    scale: int,
    metadata: dict[str, object],
    stage_params: dict[str, object],
    experiment: str,
    root: Path,
) -> Iterator[Tracker | None]:
    """The frame of every training stage: resume or restart (:func:`keep_only_an_unfinished_run`), then
    the stage's MLflow run. Under ``torchrun`` only rank 0 records anything: other ranks get ``None``."""
    is_main = int(os.environ.get("RANK", "0")) == 0
    keep_only_an_unfinished_run(out_dir, stage, cfg, scale, metadata, is_main)
    if not is_main:
        yield None
        return
    with stage_run(
        stage,
        experiment=experiment,
        params=stage_params,
        params_hash=params_hash(stage_params),
        data_hash=str(metadata["data_hash"]),
        root=root,
    ) as tracker:
        yield tracker


def training_data(prepared: Path, scale: int, cfg: TrainConfig) -> tuple[PatchSampler, list]:
    """The patch sampler over the prepared training split and the validation pairs, at ``scale``."""
    train_pairs = load_pairs(prepared, "train", scale)
    sampler = PatchSampler([(lr, hr) for _, lr, hr in train_pairs], scale, cfg.lr_patch, cfg.seed)
    return sampler, load_pairs(prepared, "val", scale)


def train_one(run: TrainingRun, root: Path = Path(".")) -> TrainResult:
    """Train ``run.model_cfg`` from scratch; resumes an interrupted run, retrains anything else."""
    prepared, cfg = root / run.prepared, run.train_cfg
    torch.manual_seed(cfg.seed)  # the initial weights: a rerun of the stage reproduces the run
    model = build_model(run.model_cfg, run.scale)
    sampler, val_pairs = training_data(prepared, run.scale, cfg)
    out_dir = root / run.out_dir
    metadata = {
        "name": run.name,
        "scale": run.scale,
        "model": run.model_cfg.model_dump(mode="json"),
        "data_hash": data_hash(prepared),
    }
    stage_params = {"model": metadata["model"], "train": cfg.model_dump(mode="json"), "scale": run.scale}
    with recorded_run(run.stage, out_dir, cfg, run.scale, metadata, stage_params, run.experiment, root) as tracker:
        result = train(model, sampler, val_pairs, cfg, run.scale, out_dir, tracker=tracker, metadata=metadata)
        if tracker is not None:
            _log_results(run, root, result, tracker, model, val_pairs)
    return result


def training_run(
    params: Params, stage: str, name: str, model_cfg: ModelConfig, train_cfg: TrainConfig, scale: int, group: str
) -> TrainingRun:
    """The run's paths from ``params.paths``: ``<paths.<group>>/<name>``, ``metrics/<group>/<name>.json``, ..."""
    paths = params.paths
    reports = "train" if group == "models" else group  # the zoo's metrics and plots sit under train/
    return TrainingRun(
        stage=stage,
        name=name,
        model_cfg=model_cfg,
        train_cfg=train_cfg,
        scale=scale,
        prepared=Path(paths.prepared),
        out_dir=Path(getattr(paths, group)) / name,
        metrics_file=Path(paths.metrics) / reports / f"{name}.json",
        plot_file=Path(paths.plots) / reports / f"{name}.csv",
        experiment=params.tracking.experiment,
        sample_crop=params.tracking.sample_crop,
    )


def run(params: Params, name: str, root: Path = Path(".")) -> TrainResult:
    """Stage ``train@<name>``: train ``params.models[name]`` at ``params.scale``."""
    if name not in params.models:
        raise ConfigError(f"no model '{name}' in params.yaml `models`; known: {', '.join(params.models)}")
    arch, cfg = params.models[name].arch, params.train_config(name)
    return train_one(training_run(params, f"train@{name}", name, arch, cfg, params.scale, "models"), root)
