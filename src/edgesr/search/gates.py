"""Straight-through channel gates and the union channel count of FGNAS (paper 001, Sec. 3.2).

Two autograd functions carry the whole search: :func:`st_gate` (Eq. 1) turns an auxiliary parameter
``psi`` into a binary keep/prune decision whose backward pass is the sigmoid's, and :func:`count_alive`
(Eq. 4) counts a channel of a feature map that several sub-feature maps share (the three activation
branches of the searchable block, or a trunk channel written by several residuals) as alive when any
of its sub-maps is alive, while its backward pass is that of the plain sum.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["GATE_THRESHOLD", "count_alive", "st_gate"]

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


class _UnionCount(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gates: Tensor) -> Tensor:
        ctx.num_sub_maps = gates.shape[-1]
        return (gates.sum(dim=-1) >= 1).to(gates.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:
        return grad_output.unsqueeze(-1).expand(*grad_output.shape, ctx.num_sub_maps)


def st_gate(psi: Tensor) -> Tensor:
    """Eq. 1: ``g(psi) = 1[psi > 0.5]`` forward, ``d sigmoid(psi) / d psi`` backward.

    Same shape as ``psi``; the forward values are exactly 0 or 1, so multiplying a feature map by them
    prunes channels exactly (a pruned channel is 0, not small).
    """
    return _StraightThroughGate.apply(psi)


def count_alive(gates: Tensor) -> Tensor:
    """Eq. 4, per channel: ``gamma = 1[sum_i g_i >= 1]`` forward, ``sum_i g_i`` backward.

    Args:
        gates: ``(..., M)`` binary gates of the ``M`` sub-feature maps that share each channel
            (``M = 1`` for the head conv and the 1x1 conv of a block, Sec. 3.2.4).

    Returns:
        ``(...)``: 1 where at least one sub-map keeps the channel; the gradient reaching each
        ``g_i`` is the gradient of ``gamma`` itself, as if ``gamma`` were ``sum_i g_i``.
    """
    return _UnionCount.apply(gates)
