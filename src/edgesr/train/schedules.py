"""Per-iteration learning-rate schedules: step, cosine and XLSR's triangular cycle.

Each schedule is a closed-form function of the iteration index, so a resumed run needs nothing but the
scheduler's ``last_epoch`` (kept in ``state_dict``) to continue on exactly the same curve. The scheduler
is stepped once per iteration, after ``optimizer.step()``: iteration ``t`` (0-based) trains with
``lr(t)``, and after the last step the optimizer holds ``lr(iterations)``, the schedule's end value.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from edgesr.train.settings import CosineSchedule, CyclicSchedule, SchedulerConfig, StepSchedule

__all__ = ["ClosedFormLR", "build_scheduler", "cyclic_lr"]

#: ``lr_at(iteration, initial_lr)`` -> learning rate for that iteration.
LrFunction = Callable[[int, float], float]


class ClosedFormLR(LRScheduler):
    """A scheduler whose rate is ``lr_at(last_epoch, lr)`` times each parameter group's factor, its initial
    rate over ``lr`` (the trainer's ``lr_scale``; 1 for a group that starts at ``lr``).

    The schedule is computed once, for the run's rate ``lr``, and scaled per group: a schedule given in
    absolute rates (the cyclic one's ``base_lr``, ``max_lr``, ``final_lr``; cosine's ``eta_min``) keeps every
    group's factor at every iteration, and a factor-1 group gets exactly ``lr_at``'s value. Unlike the
    chainable built-ins (e.g. ``CosineAnnealingLR``'s recursive form) nothing accumulates between steps, so
    ``load_state_dict`` after a restart reproduces the uninterrupted curve bit for bit.
    """

    def __init__(self, optimizer: Optimizer, lr_at: LrFunction, lr: float, last_epoch: int = -1) -> None:
        self._lr_at, self._lr = lr_at, lr
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | Tensor]:
        rate = self._lr_at(self.last_epoch, self._lr)
        return [rate * (float(base) / self._lr) for base in self.base_lrs]

    def state_dict(self) -> dict[str, Any]:
        # The function is rebuilt from the config by build_scheduler; only counters are state.
        return {key: value for key, value in super().state_dict().items() if key != "_lr_at"}


def cyclic_lr(cfg: CyclicSchedule, iteration: int, iterations: int, lr: float) -> float:
    """XLSR's triangular one-cycle rate at ``iteration`` (paper 003, Sec. 4.2; Smith 2017, WACV).

    Linear from ``base_lr`` at 0 to the top rate (``max_lr``, else ``lr``) at ``peak =
    round(up_fraction * iterations)`` (at least 1), then linear to ``final_lr`` at ``iterations``;
    constant ``final_lr`` beyond.
    """
    top = lr if cfg.max_lr is None else cfg.max_lr
    peak = min(max(1, round(cfg.up_fraction * iterations)), iterations)
    if iteration <= peak:
        return cfg.base_lr + (top - cfg.base_lr) * iteration / peak
    if iteration >= iterations:
        return cfg.final_lr
    return top + (cfg.final_lr - top) * (iteration - peak) / (iterations - peak)


def _step_lr(cfg: StepSchedule) -> LrFunction:
    return lambda t, lr: lr * cfg.gamma ** bisect_right(cfg.milestones, t)


def _cosine_lr(cfg: CosineSchedule, iterations: int) -> LrFunction:
    def lr_at(t: int, lr: float) -> float:
        progress = min(t, iterations) / iterations
        return cfg.eta_min + (lr - cfg.eta_min) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return lr_at


def _cyclic_lr(cfg: CyclicSchedule, iterations: int) -> LrFunction:
    return lambda t, lr: cyclic_lr(cfg, t, iterations, lr)


def build_scheduler(optimizer: Optimizer, cfg: SchedulerConfig, iterations: int, lr: float) -> LRScheduler:
    """The scheduler named by ``cfg.type`` for a run of ``iterations`` steps at rate ``lr`` (step once per
    iteration); a parameter group that starts at ``f * lr`` follows ``f`` times the curve (:class:`ClosedFormLR`).

    ``step`` multiplies ``lr`` by ``gamma`` at each milestone iteration; ``cosine`` anneals it to ``eta_min``
    at ``iterations`` (Loshchilov & Hutter 2017, without restarts); ``cyclic`` peaks at it
    (:func:`cyclic_lr`). Build it before ``optimizer.load_state_dict`` when resuming.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    if lr <= 0:
        raise ValueError(f"the schedule's rate lr must be > 0, got {lr}")
    if isinstance(cfg, StepSchedule):
        lr_at = _step_lr(cfg)
    elif isinstance(cfg, CosineSchedule):
        lr_at = _cosine_lr(cfg, iterations)
    else:
        lr_at = _cyclic_lr(cfg, iterations)
    return ClosedFormLR(optimizer, lr_at, lr)
