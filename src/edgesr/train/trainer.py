"""Iteration-based SR training: Adam, per-iteration LR schedule, validation PSNR-Y, best/last checkpoints.

The loop follows BasicSR's ``train.py`` (iterations, not epochs; validate every ``val_every``; keep the
best and the latest model) with the optimiser settings of paper 003, Sec. 4.2 (Adam, betas 0.9/0.999,
eps 1e-8; best model by validation PSNR). Two properties are guaranteed and tested:

- Resume is exact. Batches are a pure function of ``(seed, iteration)`` (:class:`PatchSampler`) and the
  schedule a closed form of the iteration, so restarting from ``last.pt`` (model, Adam and scheduler
  state) reaches the same weights and history as a run that was never interrupted. Randomness inside
  the model (e.g. dropout) is not checkpointed; SR networks here have none.
- The result does not depend on the number of processes. Under ``torchrun`` each of ``W`` processes
  takes ``batch_size / W`` patches of the same global batch and DistributedDataParallel averages the
  gradients, which equals the gradient of the mean loss over the global batch; BatchNorm layers are
  synchronised, so they normalise over the global batch too.

Checkpoint format (``best.pt`` and ``last.pt``, loadable with ``torch.load(path, weights_only=True)``)::

    format          int, CHECKPOINT_FORMAT
    model           state_dict of the bare model (never DDP-prefixed)
    optimizer       Adam state_dict
    scheduler       LR scheduler state_dict
    iteration       completed iterations
    best_psnr       best mean validation PSNR-Y so far (dB), best_iteration where it was reached
    history         list of {"iteration", "loss", "lr", "val_psnr" (None between validations)}
    config          TrainConfig.model_dump(mode="json"), scale  the run's settings
    metadata        the caller's JSON-able dict (e.g. model config), config_hash  what resume must match
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from edgesr.artifacts import RunFolder
from edgesr.data.patches import PatchSampler
from edgesr.errors import UsageError
from edgesr.files import atomic_write, write_json
from edgesr.inference import super_resolve
from edgesr.metrics import psnr_y
from edgesr.tracker import Tracker
from edgesr.train.distributed import DistributedContext, distributed_context, sync_batch_norm
from edgesr.train.losses import build_loss
from edgesr.train.schedules import build_scheduler
from edgesr.train.settings import TrainConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointState",
    "TrainResult",
    "TrainingObjective",
    "train",
    "validate",
    "load_checkpoint",
    "load_model_weights",
]

CHECKPOINT_FORMAT = 2  # 2: FGNAS's first running block reads the head extended one pixel beyond the image
# (edgesr.models.fgnas.extended_head), so format-1 FGNAS weights were trained for another function on the border ring
#: What ``out_dir/last.pt`` holds for a run's settings (:func:`checkpoint_state`).
CheckpointState = Literal["absent", "other-settings", "unfinished", "finished"]
#: Where the run executes, not what it computes: these may change between an interruption and a resume.
_PLACEMENT_KEYS = {"device", "threads"}


class TrainingObjective(Protocol):
    """What :func:`train` minimises instead of the pixel loss alone (an ``nn.Module``: its state is saved)."""

    # ``model`` is the model given to train(), which an objective may type as its own (FGNAS: the Supernet).
    def __call__(self, model: Any, loss: Tensor, iteration: int) -> Tensor: ...
    def metrics(self, model: Any, iteration: int) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> Any: ...
    def to(self, device: torch.device) -> Any: ...


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`; ``history`` entries are ``{"iteration", "loss", "lr", "val_psnr"}``."""

    best_psnr: float
    best_iteration: int
    final_iteration: int
    best_checkpoint: Path
    last_checkpoint: Path
    history_path: Path
    history: list[dict[str, Any]]


@dataclass
class _Progress:
    """What a checkpoint carries besides the model, optimizer and scheduler states."""

    iteration: int = 0
    best_psnr: float = -math.inf
    best_iteration: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Run:
    """One training run inside the process group: what a checkpoint holds and where the files go."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    objective: TrainingObjective | None
    cfg: TrainConfig
    scale: int
    metadata: dict[str, Any]
    fingerprint: dict[str, Any]
    ctx: DistributedContext
    folder: RunFolder
    progress: _Progress = field(default_factory=_Progress)

    def checkpoint(self) -> dict[str, Any]:
        """The ``best.pt`` / ``last.pt`` dict of the module docstring."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "iteration": self.progress.iteration,
            "best_psnr": self.progress.best_psnr,
            "best_iteration": self.progress.best_iteration,
            "history": [dict(entry) for entry in self.progress.history],
            "config": self.cfg.model_dump(mode="json"),
            "scale": self.scale,
            "metadata": self.metadata,
            "config_hash": _hash(self.fingerprint),
            "objective": self.objective.state_dict() if self.objective is not None else {},
        }

    def result(self) -> TrainResult:
        return TrainResult(
            best_psnr=self.progress.best_psnr,
            best_iteration=self.progress.best_iteration,
            final_iteration=self.progress.iteration,
            best_checkpoint=self.folder.best,
            last_checkpoint=self.folder.last,
            history_path=self.folder.history,
            history=self.progress.history,
        )


def train(
    model: nn.Module,
    sampler: PatchSampler,
    val_pairs: list[tuple[str, np.ndarray, np.ndarray]],
    cfg: TrainConfig,
    scale: int,
    out_dir: Path,
    *,
    tracker: Tracker | None = None,
    metadata: dict[str, Any] | None = None,
    on_iteration: Callable[[int], None] | None = None,
    objective: TrainingObjective | None = None,
    lr_scale: Callable[[str], float] | None = None,
) -> TrainResult:
    """Train ``model`` for ``cfg.iterations`` iterations, resuming from ``out_dir/last.pt`` if present.

    Args:
        model: maps (N, 3, h, w) in [0, 1] to (N, 3, scale*h, scale*w); moved to the run's device and
            left holding the LAST weights (load ``best.pt`` with :func:`load_model_weights` for the best).
            Under ``torchrun`` its BatchNorm layers become synchronised ones (same state dict keys), so
            BatchNorm sees the global batch (:func:`~edgesr.train.distributed.sync_batch_norm`).
        sampler: training patches; its ``scale``, ``lr_patch`` and ``seed`` must match ``scale`` and ``cfg``.
        val_pairs: ``(name, lr, hr)`` uint8 RGB images, validated whole with PSNR-Y, ``scale`` pixels
            cropped from each border (DESIGN.md data conventions).
        cfg: the run's settings; ``cfg.batch_size`` is the global batch over all ``torchrun`` processes.
        out_dir: receives ``best.pt``, ``last.pt`` and ``history.json``.
        tracker: receives ``train/loss`` and ``train/lr`` every ``log_every`` iterations, ``val/psnr_y``
            at each validation and the three files as artifacts at the end (main process only).
        metadata: JSON-able facts stored in the checkpoints (e.g. the model config); part of what a
            resume must match.
        on_iteration: called on every process with the number of completed iterations, after that
            iteration's validation and checkpoint.
        objective: turns the pixel loss into the loss to minimise (e.g. FGNAS's ``L1 + lambda R``,
            :class:`edgesr.search.budget.SearchObjective`); its state is checkpointed and its
            ``metrics`` are logged with the loss.
        lr_scale: the factor of ``cfg.lr`` for each parameter, by its name in ``model.named_parameters()``
            (its Adam group follows that factor times the schedule at every iteration, absolute rates such as
            the cyclic ``max_lr`` and cosine's ``eta_min`` included, so a factor 0 freezes it); every parameter
            trains at ``cfg.lr`` when None. The caller puts what it depends on in ``metadata``, so a resume under other
            factors is refused.

    Raises:
        ValueError: inconsistent inputs, a global batch not divisible by the number of processes, or a
            ``last.pt`` written under a different configuration.
    """
    _check_inputs(sampler, val_pairs, cfg, scale)
    metadata = _json_roundtrip(metadata or {})
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    _check_batch_split(cfg)

    with distributed_context(cfg.device) as ctx:
        run = _start_run(model, cfg, scale, metadata, Path(out_dir), ctx, objective, lr_scale)
        if run.progress.iteration < cfg.iterations:
            _iterate(run, sampler, val_pairs, tracker, on_iteration)
        if ctx.is_main and tracker is not None:
            _log_artifacts(tracker, [run.folder.best, run.folder.last, run.folder.history])
        return run.result()


def _iterate(
    run: _Run,
    sampler: PatchSampler,
    val_pairs: list[tuple[str, np.ndarray, np.ndarray]],
    tracker: Tracker | None,
    on_iteration: Callable[[int], None] | None,
) -> None:
    """The training loop, from the resumed iteration to the last: step, log, validate, checkpoint."""
    cfg, ctx = run.cfg, run.ctx
    if ctx.is_main:
        run.folder.out_dir.mkdir(parents=True, exist_ok=True)
    network, loss_fn = _data_parallel(run.model, ctx), build_loss(cfg.loss).to(ctx.device)
    with _progress_bar(run) as bar:
        for index in range(run.progress.iteration, cfg.iterations):
            batch = sampler.batch(index, cfg.batch_size, ctx.rank, ctx.world_size)
            loss, lr_used = _step(run, network, loss_fn, batch, index)
            done = run.progress.iteration = index + 1
            bar.update(1)

            is_last = done == cfg.iterations
            is_log, is_val = done % cfg.log_every == 0, done % cfg.val_every == 0 or is_last
            if is_log or is_val:
                entry = _record(run, loss, lr_used, is_log, val_pairs if is_val else None, tracker)
                bar.set_postfix(loss=f"{entry['loss']:.4g}", lr=f"{lr_used:.3g}", best=f"{run.progress.best_psnr:.2f}")
                if is_val:
                    _keep_best(run, entry["val_psnr"])
            if done % cfg.checkpoint_every == 0 or is_last:
                _save_last(run)
            if on_iteration is not None:
                on_iteration(done)


@torch.no_grad()
def validate(
    model: nn.Module,
    val_pairs: list[tuple[str, np.ndarray, np.ndarray]],
    scale: int,
    ctx: DistributedContext | None = None,
) -> float:
    """Mean PSNR-Y (dB, ``scale`` border pixels cropped) of ``model`` on whole validation images.

    The output is clamped to [0, 1] and rounded to uint8 (:func:`edgesr.inference.super_resolve`) before
    :func:`edgesr.metrics.psnr_y`. Under ``torchrun`` each process scores every ``world_size``-th image
    and the sums are all-reduced, so every process returns the same mean. Leaves ``model`` in eval mode.
    """
    rank, world_size = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    device = next(model.parameters()).device
    model.eval()
    total = 0.0
    for name, lr, hr in val_pairs[rank::world_size]:
        sr_image = super_resolve(model, lr, device)
        if sr_image.shape != hr.shape:
            raise ValueError(
                f"validation image {name!r}: model output {sr_image.shape} does not match HR {hr.shape} "
                f"(LR {lr.shape}, scale {scale})"
            )
        total += psnr_y(sr_image, hr, crop_border=scale)
    if ctx is not None and ctx.is_distributed:
        summed = torch.tensor([total], dtype=torch.float64, device=ctx.device)
        dist.all_reduce(summed)
        total = float(summed.item())
    return total / len(val_pairs)


def checkpoint_state(
    out_dir: Path, cfg: TrainConfig, scale: int, metadata: dict[str, Any] | None = None
) -> CheckpointState:
    """What :func:`train` would find in ``out_dir/last.pt`` for these settings.

    ``unfinished`` is the only state it resumes; ``other-settings`` it refuses; ``finished`` it
    returns as it is.
    """
    last_path = RunFolder(Path(out_dir)).last
    if not last_path.exists():
        return "absent"
    saved = _read_checkpoint(last_path, "cpu")
    fingerprint = _fingerprint(cfg.model_dump(mode="json"), scale, _json_roundtrip(metadata or {}))
    if saved.get("format") != CHECKPOINT_FORMAT or saved.get("config_hash") != _hash(fingerprint):
        return "other-settings"
    return "finished" if int(saved["iteration"]) >= cfg.iterations else "unfinished"


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A ``best.pt`` / ``last.pt`` dict (format in the module docstring), loaded with ``weights_only=True``.

    A checkpoint of another format is refused: its weights were trained for another function (the format's
    history is at ``CHECKPOINT_FORMAT``), and loading them would run silently with different outputs.
    """
    saved = _read_checkpoint(path, map_location)
    if saved.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(
            f"{path} is a checkpoint of format {saved.get('format')}, this edgesr reads format {CHECKPOINT_FORMAT} "
            "(its models compute another function since): train it again with this version (`dvc repro` reruns "
            "its stage), or load it with the edgesr version that wrote it"
        )
    return saved


def _read_checkpoint(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    return torch.load(path, map_location=map_location, weights_only=True)


def load_model_weights(model: nn.Module, path: Path) -> nn.Module:
    """Load the model weights of checkpoint ``path`` into ``model`` (strict) and return it."""
    model.load_state_dict(load_checkpoint(path)["model"])
    return model


def _check_inputs(
    sampler: PatchSampler, val_pairs: list[tuple[str, np.ndarray, np.ndarray]], cfg: TrainConfig, scale: int
) -> None:
    mismatches = [
        f"{name}: sampler {have}, run {want}"
        for name, have, want in (
            ("scale", sampler.scale, scale),
            ("lr_patch", sampler.lr_patch, cfg.lr_patch),
            ("seed", sampler.seed, cfg.seed),
        )
        if have != want
    ]
    if mismatches:
        raise ValueError(
            "the PatchSampler was built with other settings than this run (" + "; ".join(mismatches) + "); "
            "build it with PatchSampler(pairs, scale, cfg.lr_patch, cfg.seed)"
        )
    if not val_pairs:
        raise ValueError("train needs at least one validation pair to select best.pt, got none")


def _check_batch_split(cfg: TrainConfig) -> None:
    """The global batch must split evenly over the processes; checked before the process group exists,
    so every process fails fast instead of hanging."""
    world_size = DistributedContext.from_env(cfg.device).world_size
    if cfg.batch_size % world_size:
        raise UsageError(
            f"train.batch_size={cfg.batch_size} is the global batch and must split evenly over the "
            f"{world_size} processes; choose a multiple of {world_size} or change --nproc_per_node"
        )


def _start_run(
    model: nn.Module,
    cfg: TrainConfig,
    scale: int,
    metadata: dict[str, Any],
    out_dir: Path,
    ctx: DistributedContext,
    objective: TrainingObjective | None,
    lr_scale: Callable[[str], float] | None = None,
) -> _Run:
    """Model and objective on the run's device, Adam (:func:`_parameter_groups`) and the LR schedule; resumed
    from ``last.pt`` if present.

    Under ``torchrun`` the model's BatchNorm layers are synchronised over the processes first.
    """
    model.to(ctx.device)
    if ctx.is_distributed:
        model = sync_batch_norm(model, ctx.device)
    if objective is not None:
        objective.to(ctx.device)
    optimizer = torch.optim.Adam(
        _parameter_groups(model, cfg.lr, lr_scale), lr=cfg.lr, betas=cfg.betas, eps=1e-8, weight_decay=cfg.weight_decay
    )
    # The scheduler must exist before the optimizer state is loaded: it overwrites the group lrs.
    scheduler = build_scheduler(optimizer, cfg.scheduler, cfg.iterations, cfg.lr)
    fingerprint = _fingerprint(cfg.model_dump(mode="json"), scale, metadata)
    run = _Run(model, optimizer, scheduler, objective, cfg, scale, metadata, fingerprint, ctx, RunFolder(out_dir))
    if run.folder.last.exists():
        run.progress = _resume(run.folder.last, fingerprint, model, optimizer, scheduler, ctx.device, objective)
    return run


def _parameter_groups(model: nn.Module, lr: float, lr_scale: Callable[[str], float] | None) -> list[dict[str, Any]]:
    """Adam's parameter groups: one per distinct ``lr_scale`` factor, the factor-1 group first (its rate is the
    one the history records)."""
    by_factor: dict[float, list[nn.Parameter]] = {1.0: []}
    for name, parameter in model.named_parameters():
        by_factor.setdefault(1.0 if lr_scale is None else float(lr_scale(name)), []).append(parameter)
    return [{"params": params, "lr": lr * factor} for factor, params in by_factor.items() if params]


def _data_parallel(model: nn.Module, ctx: DistributedContext) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel under ``torchrun``, else ``model`` itself."""
    if not ctx.is_distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def _progress_bar(run: _Run) -> tqdm:
    """The iteration bar (main process only), starting at the resumed iteration."""
    progress, disable = run.progress.iteration, not run.ctx.is_main
    return tqdm(total=run.cfg.iterations, initial=progress, desc="train", dynamic_ncols=True, disable=disable)


def _step(
    run: _Run, network: nn.Module, loss_fn: nn.Module, batch: tuple[Tensor, Tensor], index: int
) -> tuple[Tensor, float]:
    """One optimizer and schedule step on this process's part of the batch: its pixel loss and the lr used."""
    lr_batch, hr_batch = batch
    network.train()
    loss = loss_fn(network(lr_batch.to(run.ctx.device)), hr_batch.to(run.ctx.device))
    total = loss if run.objective is None else run.objective(run.model, loss, index)
    run.optimizer.zero_grad(set_to_none=True)
    total.backward()
    if run.cfg.grad_clip is not None:
        # after backward, so under DDP every process clips the same all-reduced gradients
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    run.optimizer.step()
    lr_used = float(run.optimizer.param_groups[0]["lr"])
    run.scheduler.step()
    return loss, lr_used


def _record(
    run: _Run,
    loss: Tensor,
    lr_used: float,
    is_log: bool,
    val_pairs: list[tuple[str, np.ndarray, np.ndarray]] | None,
    tracker: Tracker | None,
) -> dict[str, Any]:
    """Append the history entry of the iteration just done and log it (main process).

    Every process takes part: the loss is averaged over them and ``val_pairs`` (None: no validation
    at this iteration) are scored by all of them.
    """
    done, ctx = run.progress.iteration, run.ctx
    entry: dict[str, Any] = {"iteration": done, "loss": _mean_over_processes(loss, ctx), "lr": lr_used}
    entry["val_psnr"] = validate(run.model, val_pairs, run.scale, ctx) if val_pairs is not None else None
    searched = run.objective.metrics(run.model, done) if run.objective is not None else {}
    entry |= searched
    run.progress.history.append(entry)
    if ctx.is_main and tracker is not None:
        metrics = {"train/loss": entry["loss"], "train/lr": lr_used} if is_log else {}
        metrics |= searched
        if val_pairs is not None:
            metrics["val/psnr_y"] = entry["val_psnr"]
        tracker.log_metrics(metrics, step=done)
    return entry


def _keep_best(run: _Run, val_psnr: float) -> None:
    """A new best validation PSNR becomes ``best.pt``."""
    if val_psnr > run.progress.best_psnr:
        run.progress.best_psnr, run.progress.best_iteration = val_psnr, run.progress.iteration
        if run.ctx.is_main:
            _save_checkpoint(run.checkpoint(), run.folder.best)


def _save_last(run: _Run) -> None:
    """``history.json`` and ``last.pt`` (main process), then every process waits for them."""
    if run.ctx.is_main:
        # history.json first: a finished last.pt makes a rerun return at once.
        _write_history(run.folder.history, run.progress)
        _save_checkpoint(run.checkpoint(), run.folder.last)
    run.ctx.barrier()


def _fingerprint(config: dict[str, Any], scale: int | None, metadata: dict[str, Any]) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one: everything but device placement."""
    settings = {key: value for key, value in config.items() if key not in _PLACEMENT_KEYS}
    return {"train": settings, "scale": scale, "metadata": metadata}


def _hash(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def _resume(
    path: Path,
    fingerprint: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    objective: TrainingObjective | None,
) -> _Progress:
    """Restore model, optimizer and scheduler from ``path`` after checking it belongs to this run."""
    saved = load_checkpoint(path, map_location=device)
    if saved.get("config_hash") != _hash(fingerprint):
        before = _fingerprint(saved.get("config", {}), saved.get("scale"), saved.get("metadata", {}))
        changes = [f"{key}: {old!r} -> {new!r}" for key, old, new in _differences(before, fingerprint)]
        raise ValueError(
            f"{path} was written by a run with different settings ({'; '.join(changes) or 'unknown'}). "
            f"Delete {path.parent} to start a new run, or restore the previous settings to resume it."
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    if objective is not None:
        objective.load_state_dict(saved["objective"])
    return _Progress(
        iteration=int(saved["iteration"]),
        best_psnr=float(saved["best_psnr"]),
        best_iteration=int(saved["best_iteration"]),
        history=list(saved["history"]),
    )


def _differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ between two nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[tuple[str, Any, Any]] = []
        for key in sorted(set(old) | set(new), key=str):
            found += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return found
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def _json_roundtrip(metadata: dict[str, Any]) -> dict[str, Any]:
    # Storing the JSON form keeps the checkpoint loadable with weights_only=True and the hash stable.
    try:
        return json.loads(json.dumps(metadata))
    except TypeError as error:
        raise ValueError(f"metadata must be JSON-serialisable, it is stored in the checkpoints: {error}") from None


def _mean_over_processes(loss: Tensor, ctx: DistributedContext) -> float:
    """The global-batch loss: the mean of the equally sized per-process losses."""
    value = loss.detach()
    if ctx.is_distributed:
        value = value.clone()
        dist.all_reduce(value)
        value /= ctx.world_size
    return float(value.item())


def _save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    atomic_write(path, lambda temporary: torch.save(checkpoint, temporary))


def _write_history(path: Path, progress: _Progress) -> None:
    record = {
        "iteration": progress.iteration,
        # -inf (nothing validated yet) is not valid JSON.
        "best_psnr": progress.best_psnr if progress.best_iteration else None,
        "best_iteration": progress.best_iteration,
        "history": progress.history,
    }
    write_json(path, record, indent=1)


def _log_artifacts(tracker: Tracker, paths: list[Path]) -> None:
    for path in paths:
        if path.exists():
            tracker.log_artifact(path)
