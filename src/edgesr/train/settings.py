"""Typed configuration of the ``train`` section of ``params.yaml``.

The loss and the learning-rate schedule are chosen by their ``type`` field (discriminated unions), so a
wrong name stops at load time with the list of allowed ones. Every count is in iterations (mini-batch
steps), never epochs: the patch sampler draws a fresh random batch per iteration, as BasicSR does.
Patch size, batch and Adam betas default to the XLSR recipe of paper 003, Sec. 4.2 (32x32 LR patches,
batch 16, betas 0.9/0.999); its loss (``charbonnier`` with eps 0.1) and schedule (``cyclic``) are
available by name.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from edgesr.schema import StrictModel

__all__ = [
    "LossConfig",
    "StepSchedule",
    "CosineSchedule",
    "CyclicSchedule",
    "SchedulerConfig",
    "TrainConfig",
]


class LossConfig(StrictModel):
    """Pixel loss: ``l1`` (mean absolute error) or ``charbonnier`` (paper 003, Eq. 3)."""

    type: Literal["l1", "charbonnier"] = "l1"
    eps: float = 1e-3

    @field_validator("eps")
    @classmethod
    def _eps_positive(cls, eps: float) -> float:
        if eps <= 0:
            raise ValueError(f"eps must be > 0 (it keeps the Charbonnier gradient finite at 0), got {eps}")
        return eps


class StepSchedule(StrictModel):
    """Multiply the learning rate by ``gamma`` at each milestone (iteration counts, not fractions)."""

    type: Literal["step"] = "step"
    milestones: list[int] = Field(default_factory=list)
    gamma: float = Field(0.5, gt=0, le=1)

    @field_validator("milestones")
    @classmethod
    def _increasing_positive(cls, milestones: list[int]) -> list[int]:
        if any(m < 1 for m in milestones):
            raise ValueError(f"milestones are iteration counts >= 1, got {milestones}")
        if any(b <= a for a, b in zip(milestones, milestones[1:], strict=False)):
            raise ValueError(f"milestones must be strictly increasing, got {milestones}")
        return milestones


class CosineSchedule(StrictModel):
    """Cosine annealing from ``train.lr`` to ``eta_min`` over all iterations (Loshchilov & Hutter 2017)."""

    type: Literal["cosine"] = "cosine"
    eta_min: float = Field(1e-7, ge=0)


class CyclicSchedule(StrictModel):
    """XLSR's one-cycle triangular schedule (paper 003, Sec. 4.2 "training details"; Smith 2017).

    Linear from ``base_lr`` up to the peak over the first ``up_fraction`` of training (50 of 5000
    epochs = 0.01 in the paper), then linear down to ``final_lr`` at the end. The peak is ``train.lr``,
    as for the other schedules; ``max_lr`` may repeat it (older params files) but must not differ.
    """

    type: Literal["cyclic"] = "cyclic"
    base_lr: float = Field(5e-5, gt=0)
    max_lr: float | None = Field(None, gt=0, description="the peak; None (the default) means train.lr")
    final_lr: float = Field(1e-4, gt=0)
    up_fraction: float = Field(0.01, gt=0, lt=1)

    @model_validator(mode="after")
    def _peak_is_highest(self) -> CyclicSchedule:
        if self.max_lr is not None and self.max_lr < max(self.base_lr, self.final_lr):
            raise ValueError(
                f"max_lr ({self.max_lr}) must be >= base_lr ({self.base_lr}) and final_lr ({self.final_lr})"
            )
        return self


SchedulerConfig = Annotated[StepSchedule | CosineSchedule | CyclicSchedule, Field(discriminator="type")]


class TrainConfig(StrictModel):
    """Everything that decides a training run, plus where it runs (``device``, ``threads``).

    ``batch_size`` is the GLOBAL batch: under ``torchrun`` each of the ``WORLD_SIZE`` processes takes
    ``batch_size / WORLD_SIZE`` patches of the same per-iteration batch, so the result does not depend
    on the number of processes. ``val_every``, ``checkpoint_every`` and ``log_every`` count iterations.
    """

    iterations: int = Field(ge=1)
    batch_size: int = Field(16, ge=1)
    lr_patch: int = Field(32, ge=1, description="LR patch side in pixels; the HR patch is scale times larger")
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(
        None,
        gt=0,
        description="largest global L2 norm of the gradients before each Adam step (torch.nn.utils.clip_grad_norm_)"
        "; None: no clipping",
    )
    loss: LossConfig = LossConfig()
    scheduler: SchedulerConfig = CosineSchedule()
    val_every: int = Field(1000, ge=1)
    checkpoint_every: int = Field(1000, ge=1)
    log_every: int = Field(100, ge=1)
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; None keeps torch's default")

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam betas must lie in [0, 1), got {list(betas)}")
        return betas

    @model_validator(mode="after")
    def _schedule_fits_run(self) -> TrainConfig:
        if isinstance(self.scheduler, StepSchedule) and any(m >= self.iterations for m in self.scheduler.milestones):
            raise ValueError(
                f"scheduler.milestones {self.scheduler.milestones} must all be below iterations "
                f"({self.iterations}); milestones are iteration counts, not fractions"
            )
        if isinstance(self.scheduler, CosineSchedule) and self.scheduler.eta_min > self.lr:
            raise ValueError(
                f"scheduler.eta_min ({self.scheduler.eta_min}) must not exceed lr ({self.lr}): "
                "cosine annealing decays from lr down to eta_min"
            )
        if isinstance(self.scheduler, CyclicSchedule):
            self._check_cyclic_peak(self.scheduler)
        return self

    def _check_cyclic_peak(self, scheduler: CyclicSchedule) -> None:
        """The cyclic schedule peaks at ``lr``: a ``max_lr`` that differs would leave ``lr`` unused."""
        if scheduler.max_lr is not None and scheduler.max_lr != self.lr:
            raise ValueError(
                f"lr ({self.lr}) is the peak of the cyclic schedule but scheduler.max_lr is {scheduler.max_lr}: "
                f"set lr to {scheduler.max_lr} and drop scheduler.max_lr (it defaults to lr)"
            )
        if self.lr < max(scheduler.base_lr, scheduler.final_lr):
            raise ValueError(
                f"lr ({self.lr}) is the peak of the cyclic schedule and must be >= scheduler.base_lr "
                f"({scheduler.base_lr}) and scheduler.final_lr ({scheduler.final_lr})"
            )
