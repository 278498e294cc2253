"""Learning-rate schedules: XLSR's triangular cycle (paper 003, Sec. 4.2), cosine, step; exact resume."""

from __future__ import annotations

import io

import pydantic
import pytest
import torch

from edgesr.train.schedules import build_scheduler
from edgesr.train.settings import CosineSchedule, CyclicSchedule, SchedulerConfig, StepSchedule, TrainConfig

LR = 1e-3


def _optimizer(lr: float = LR) -> torch.optim.Optimizer:
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def _rates(cfg: SchedulerConfig, iterations: int, lr: float = LR) -> list[float]:
    """lr used at iterations 0..iterations-1, then the value held after the last step."""
    optimizer = _optimizer(lr)
    scheduler = build_scheduler(optimizer, cfg, iterations, lr)
    rates = []
    for _ in range(iterations):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates + [optimizer.param_groups[0]["lr"]]


def test_cyclic_follows_the_xlsr_triangle() -> None:
    # given XLSR's recipe: 5e-5 -> 2.5e-3 over the first 1 % -> 1e-4 at the end
    rates = _rates(CyclicSchedule(), iterations=1000, lr=2.5e-3)

    # then the corners are exact and the two legs are straight lines
    assert rates[0] == pytest.approx(5e-5, rel=1e-12)
    assert rates[10] == pytest.approx(2.5e-3, rel=1e-12) and max(rates) == rates[10]
    assert rates[1000] == pytest.approx(1e-4, rel=1e-12)
    assert rates[5] == pytest.approx((5e-5 + 2.5e-3) / 2, rel=1e-12)
    assert rates[505] == pytest.approx((2.5e-3 + 1e-4) / 2, rel=1e-12)
    up, down = torch.tensor(rates[:11], dtype=torch.float64), torch.tensor(rates[10:], dtype=torch.float64)
    torch.testing.assert_close(up.diff(), torch.full((10,), (2.5e-3 - 5e-5) / 10, dtype=torch.float64))
    torch.testing.assert_close(down.diff(), torch.full((990,), (1e-4 - 2.5e-3) / 990, dtype=torch.float64))


def test_cyclic_peaks_at_the_optimizer_lr_or_at_max_lr() -> None:
    triangle = [1e-4, 0.00505, 1e-2, 0.0055, 1e-3]
    schedule = {"base_lr": 1e-4, "final_lr": 1e-3, "up_fraction": 0.5}

    assert _rates(CyclicSchedule(**schedule), 4, lr=1e-2) == pytest.approx(triangle)
    assert _rates(CyclicSchedule(**schedule, max_lr=1e-2), 4, lr=1e-2) == pytest.approx(triangle)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (
            {"lr": 1e-3, "scheduler": {"type": "cyclic", "max_lr": 2.5e-3}},
            r"lr \(0\.001\) is the peak of the cyclic schedule but scheduler\.max_lr is 0\.0025: "
            r"set lr to 0\.0025 and drop scheduler\.max_lr",
        ),
        ({"lr": 1e-5, "scheduler": {"type": "cyclic"}}, r"lr \(1e-05\) is the peak .* must be >= scheduler\.base_lr"),
    ],
)
def test_train_lr_is_the_cyclic_peak(train: dict, message: str) -> None:
    assert TrainConfig(iterations=10, lr=2.5e-3, scheduler={"type": "cyclic", "max_lr": 2.5e-3}).lr == 2.5e-3
    with pytest.raises(pydantic.ValidationError, match=message):
        TrainConfig(iterations=10, **train)


def test_cosine_anneals_from_lr_to_eta_min() -> None:
    rates = _rates(CosineSchedule(eta_min=1e-5), iterations=100)

    assert rates[0] == LR
    assert rates[50] == pytest.approx((LR + 1e-5) / 2, rel=1e-12)
    assert rates[100] == pytest.approx(1e-5, rel=1e-12)
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))


def test_step_multiplies_by_gamma_at_each_milestone() -> None:
    rates = _rates(StepSchedule(milestones=[2, 4], gamma=0.1), iterations=6)

    assert rates == pytest.approx([LR, LR, LR * 0.1, LR * 0.1, LR * 0.01, LR * 0.01, LR * 0.01], rel=1e-12)


@pytest.mark.parametrize("cfg", [StepSchedule(milestones=[3, 9]), CosineSchedule(), CyclicSchedule()])
def test_state_round_trip_continues_the_same_curve(cfg: SchedulerConfig) -> None:
    # given a scheduler stopped after 7 of 12 iterations, its state saved like a checkpoint
    optimizer = _optimizer()
    scheduler = build_scheduler(optimizer, cfg, 12, LR)
    for _ in range(7):
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    # when a fresh optimizer and scheduler load it (scheduler built first, as on resume)
    resumed_optimizer = _optimizer()
    resumed = build_scheduler(resumed_optimizer, cfg, 12, LR)
    resumed_optimizer.load_state_dict(saved["optimizer"])
    resumed.load_state_dict(saved["scheduler"])

    # then the remaining rates are exactly those of the uninterrupted run
    remaining = []
    for _ in range(5):
        remaining.append(resumed_optimizer.param_groups[0]["lr"])
        resumed_optimizer.step()
        resumed.step()
    assert remaining == _rates(cfg, 12)[7:12]


@pytest.mark.parametrize(
    "cfg", [StepSchedule(milestones=[3, 9]), CosineSchedule(eta_min=1e-5), CyclicSchedule()], ids=lambda c: c.type
)
def test_every_parameter_group_follows_its_factor_of_the_curve(cfg: SchedulerConfig) -> None:
    """The trainer's lr_scale: a group started at f * lr runs at f times the run's curve at every iteration,
    the schedules' absolute rates (cosine's eta_min, the cyclic corners) included; the factor-1 group exactly."""
    factors = [1.0, 0.25, 0.0, 10.0]
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": factor * LR} for factor in factors]
    optimizer = torch.optim.Adam(groups, lr=LR)
    scheduler = build_scheduler(optimizer, cfg, 12, LR)
    for rate in _rates(cfg, 12):
        rates = [group["lr"] for group in optimizer.param_groups]
        assert rates[0] == rate
        assert rates == pytest.approx([factor * rate for factor in factors], rel=1e-12, abs=0)
        optimizer.step()
        scheduler.step()


@pytest.mark.parametrize(
    ("factory", "settings", "message"),
    [
        (StepSchedule, {"milestones": [5, 5]}, "strictly increasing"),
        (StepSchedule, {"milestones": [0.5]}, "valid integer"),
        (CyclicSchedule, {"up_fraction": 1.0}, "less than 1"),
        (CyclicSchedule, {"max_lr": 1e-5}, r"max_lr \(1e-05\) must be >= base_lr"),
    ],
)
def test_invalid_schedule_config_is_rejected(factory: type, settings: dict, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        factory(**settings)
