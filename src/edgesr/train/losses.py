"""Pixel losses for SR training: L1 (BasicSR's default) and Charbonnier (paper 003, Eq. 3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgesr.train.settings import LossConfig

__all__ = ["CharbonnierLoss", "build_loss"]


class CharbonnierLoss(nn.Module):
    """Mean of ``sqrt((x - y)^2 + eps^2)`` over all elements (paper 003, Sec. 4.2, Eq. 3).

    A smooth L1: XLSR uses it (eps 0.1) because its clipped-ReLU output leaves flat regions where the
    L1 subgradient is uninformative. With ``eps > 0`` the gradient ``d / (sqrt(d^2 + eps^2))`` is finite
    at ``d = 0``; ``eps = 0`` reduces it to L1 (allowed here for checks, rejected by :class:`LossConfig`).
    """

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """Scalar loss of two tensors of the same shape (any layout)."""
        return torch.sqrt((prediction - target) ** 2 + self.eps**2).mean()

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


def build_loss(cfg: LossConfig) -> nn.Module:
    """The loss module named by ``cfg.type``; both reduce by the mean over all elements."""
    if cfg.type == "charbonnier":
        return CharbonnierLoss(cfg.eps)
    return nn.L1Loss()
