"""Straight-through channel gates and the union channel count of FGNAS (paper 001, Sec. 3.2).

Two autograd functions carry the whole search: :func:`st_gate` (Eq. 1) turns an auxiliary parameter
``psi`` into a binary keep/prune decision whose backward pass is the sigmoid's, and :func:`count_alive`
(Eq. 4) counts a channel of a feature map that several sub-feature maps share (the three activation
branches of the searchable block, or a trunk channel written by several residuals) as alive when any
of its sub-maps is alive, while its backward pass is that of the plain sum (the paper) or that sum
shared among the alive sub-maps (:data:`edgesr.search.settings.CountGradient`). :func:`scale_gradient`
lets the search weigh a gate's loss gradient differently from its forward use
(:data:`edgesr.search.settings.MultGateGradient`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from edgesr.search.settings import CountGradient

__all__ = ["GATE_THRESHOLD", "count_alive", "scale_gradient", "st_gate"]

GATE_THRESHOLD = 0.5
"""A channel is kept when its ``psi`` exceeds this value (Eq. 1: ``1[psi > 0.5]``)."""


class _StraightThroughGate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, psi: Tensor) -> Tensor:
        ctx.save_for_backward(psi)
        return (psi > GATE_THRESHOLD).to(psi.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        (psi,) = ctx.saved_tensors
        sigmoid = torch.sigmoid(psi)
        return grad_output * sigmoid * (1.0 - sigmoid)


class _ScaledGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        return grad_output * ctx.factor, None


class _UnionCount(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gates: Tensor, shared: bool) -> Tensor:
        ctx.shared = shared
        ctx.save_for_backward(gates)
        return (gates.sum(dim=-1) >= 1).to(gates.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        (gates,) = ctx.saved_tensors
        per_sub_map = grad_output.unsqueeze(-1).expand_as(gates)
        if ctx.shared:
            per_sub_map = per_sub_map * gates / gates.sum(dim=-1, keepdim=True).clamp(min=1.0)
        return per_sub_map, None


def st_gate(psi: Tensor) -> Tensor:
    """Eq. 1: ``g(psi) = 1[psi > 0.5]`` forward, ``d sigmoid(psi) / d psi`` backward.

    Same shape as ``psi``; the forward values are exactly 0 or 1, so multiplying a feature map by them
    prunes channels exactly (a pruned channel is 0, not small).
    """
    return _StraightThroughGate.apply(psi)


def scale_gradient(x: Tensor, factor: float) -> Tensor:
    """``x`` unchanged forward; the gradient flowing back through it multiplied by ``factor``."""
    return _ScaledGradient.apply(x, factor)


def count_alive(gates: Tensor, gradient: CountGradient = "sum") -> Tensor:
    """Eq. 4, per channel: ``gamma = 1[sum_i g_i >= 1]`` forward, ``sum_i g_i`` backward.

    Args:
        gates: ``(..., M)`` binary gates of the ``M`` sub-feature maps that share each channel
            (``M = 1`` for the head conv and the 1x1 conv of a block, Sec. 3.2.4).
        gradient: ``sum``: the gradient reaching each ``g_i`` is the gradient of ``gamma`` itself, as if
            ``gamma`` were ``sum_i g_i`` (the paper); ``shared``: it is ``g_i / max(1, sum_j g_j)`` of
            it (:data:`edgesr.search.settings.CountGradient`). Both are the same for ``M = 1`` and an alive gate.

    Returns:
        ``(...)``: 1 where at least one sub-map keeps the channel.
    """
    return _UnionCount.apply(gates, gradient == "shared")
