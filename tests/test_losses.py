"""Charbonnier loss (paper 003, Eq. 3) and the loss builder."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch
from torch import nn

from edgesr.train.losses import CharbonnierLoss, build_loss
from edgesr.train.settings import LossConfig

TARGET = torch.zeros(3)
PREDICTION = torch.tensor([0.0, 3.0, 4.0])


def test_charbonnier_with_eps_zero_is_l1() -> None:
    assert CharbonnierLoss(eps=0.0)(PREDICTION, TARGET).item() == pytest.approx(7.0 / 3.0)
    assert CharbonnierLoss(eps=0.0)(PREDICTION, TARGET).item() == pytest.approx(nn.L1Loss()(PREDICTION, TARGET).item())


def test_charbonnier_is_the_mean_of_sqrt_d2_plus_eps2() -> None:
    expected = (math.sqrt(0.01) + math.sqrt(9.01) + math.sqrt(16.01)) / 3.0

    assert CharbonnierLoss(eps=0.1)(PREDICTION, TARGET).item() == pytest.approx(expected, rel=1e-6)


def test_charbonnier_gradient_is_finite_and_zero_where_prediction_equals_target() -> None:
    prediction = PREDICTION.clone().requires_grad_()

    CharbonnierLoss(eps=1e-3)(prediction, TARGET).backward()

    assert torch.isfinite(prediction.grad).all()
    # d/dx mean(sqrt(d^2 + eps^2)) = d / (3 sqrt(d^2 + eps^2))
    expected = PREDICTION / (3 * torch.sqrt(PREDICTION**2 + 1e-6))
    torch.testing.assert_close(prediction.grad, expected)
    assert prediction.grad[0] == 0


def test_build_loss_picks_the_configured_loss() -> None:
    charbonnier = build_loss(LossConfig(type="charbonnier", eps=0.1))

    assert isinstance(charbonnier, CharbonnierLoss) and charbonnier.eps == 0.1
    assert isinstance(build_loss(LossConfig(type="l1")), nn.L1Loss)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"type": "charbonnier", "eps": 0.0}, "eps must be > 0"),
        ({"type": "l2"}, "Input should be 'l1' or 'charbonnier'"),
    ],
)
def test_invalid_loss_config_is_rejected(settings: dict, message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        LossConfig(**settings)
