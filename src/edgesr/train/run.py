"""One training run as a pipeline stage: its data, the resume-or-restart decision, its MLflow run, its reports.

Shared by the zoo's ``train@<name>``, FGNAS's ``search@<size>`` and ``retrain@<size>-<scale>`` stages.
DVC keeps a stage's output folder between runs (``persist: true``), so an interrupted run resumes from
its ``last.pt``; :func:`keep_only_an_unfinished_run` decides whether the folder holds such a run or
anything else to remove (under ``torchrun`` rank 0 decides and removes, then tells the others). Pictures
are not drawn here: the ``figures`` stage draws them from the files written here, so a plot change
retrains nothing.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from edgesr.artifacts import RunFolder, TrainingPaths
from edgesr.config import params_hash
from edgesr.data.patches import PatchSampler
from edgesr.data.prepare import data_hash, load_pairs
from edgesr.files import write_json, write_text
from edgesr.models import ModelConfig, build_model
from edgesr.tracker import Tracker
from edgesr.tracking import stage_run
from edgesr.train.distributed import DistributedContext, distributed_context
from edgesr.train.settings import TrainConfig
from edgesr.train.trainer import CheckpointState, TrainResult, checkpoint_state, train

__all__ = [
    "TrainingRun",
    "history_csv",
    "keep_only_an_unfinished_run",
    "recorded_run",
    "train_one",
    "training_data",
    "training_data_hash",
]

TRAINING_SETS = ("train", "val")


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
    """One model trained by the shared recipe: a zoo ``train@<name>`` or an FGNAS ``retrain@<size>-<scale>``."""

    stage: str
    name: str
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    scale: int
    prepared: Path
    paths: TrainingPaths
    experiment: str
    root: Path


def training_data(prepared: Path, scale: int, cfg: TrainConfig) -> tuple[PatchSampler, list]:
    """The patch sampler over the prepared training split and the validation pairs, at ``scale``."""
    train_pairs = load_pairs(prepared, "train", scale)
    sampler = PatchSampler([(lr, hr) for _, lr, hr in train_pairs], scale, cfg.lr_patch, cfg.seed)
    return sampler, load_pairs(prepared, "val", scale)


def training_data_hash(prepared: Path, scale: int) -> str:
    """The identity of what a training run reads: the train and val pairs at ``scale``, nothing else."""
    return data_hash(prepared, TRAINING_SETS, scale)


def keep_only_an_unfinished_run(
    out_dir: Path, name: str, cfg: TrainConfig, scale: int, metadata: dict[str, object], ctx: DistributedContext
) -> CheckpointState:
    """Decide what to do with the ``last.pt`` that DVC kept (``persist: true``); returns the decision.

    DVC reruns this stage only when something it tracks changed or the last run did not finish. So
    an unfinished run with the same settings and data is resumed; anything else (other settings or
    data, or a finished run, which means code changed) is removed and trained again from scratch.
    Under ``torchrun`` rank 0 alone reads and removes the folder, then broadcasts its decision: the
    other ranks wait for it, so none of them reads ``last.pt`` before rank 0 is done with the folder.
    """
    state = checkpoint_state(out_dir, cfg, scale, metadata) if ctx.is_main else None
    if state == "unfinished":
        print(f"{name}: resuming the interrupted run from {RunFolder(out_dir).last}")
    elif state in ("other-settings", "finished"):
        reason = "was written under other settings or data" if state == "other-settings" else "is a finished run"
        print(f"{name}: {RunFolder(out_dir).last} {reason}; training from scratch")
        shutil.rmtree(out_dir)
    decided = ctx.broadcast_from_main(state)
    assert decided is not None, "rank 0 always decides"
    return decided


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
    """The frame of every training stage: the ``torchrun`` process group, resume or restart
    (:func:`keep_only_an_unfinished_run`), then the stage's MLflow run. The group is up for the whole
    stage (:func:`~edgesr.train.trainer.train` joins it). Only rank 0 records anything: other ranks get
    ``None``."""
    with distributed_context(cfg.device) as ctx:
        keep_only_an_unfinished_run(out_dir, stage, cfg, scale, metadata, ctx)
        if not ctx.is_main:
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


def _report(run: TrainingRun, result: TrainResult, tracker: Tracker) -> None:
    """The metrics file, the curve as a DVC plot and the best scores in MLflow."""
    summary = {
        "best_val_psnr_y": result.best_psnr,
        "best_iteration": result.best_iteration,
        "iterations": result.final_iteration,
    }
    write_json(run.paths.metrics_file, summary)
    write_text(run.paths.plot_file, history_csv(result.history))
    tracker.log_metrics({"best/val_psnr_y": result.best_psnr, "best/iteration": result.best_iteration})


def train_one(run: TrainingRun) -> TrainResult:
    """Train ``run.model_cfg`` from scratch; resumes an interrupted run, retrains anything else."""
    cfg = run.train_cfg
    torch.manual_seed(cfg.seed)  # the initial weights: a rerun of the stage reproduces the run
    model = build_model(run.model_cfg, run.scale)
    sampler, val_pairs = training_data(run.prepared, run.scale, cfg)
    metadata = {
        "name": run.name,
        "scale": run.scale,
        "model": run.model_cfg.model_dump(mode="json"),
        "data_hash": training_data_hash(run.prepared, run.scale),
    }
    stage_params = {
        "model": metadata["model"],
        "train": cfg.model_dump(mode="json"),
        "scale": run.scale,
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),  # AVX2 when pinned (edgesr.kernels)
    }
    out_dir = run.paths.out_dir
    with recorded_run(run.stage, out_dir, cfg, run.scale, metadata, stage_params, run.experiment, run.root) as tracker:
        result = train(model, sampler, val_pairs, cfg, run.scale, out_dir, tracker=tracker, metadata=metadata)
        if tracker is not None:
            _report(run, result, tracker)
    return result
