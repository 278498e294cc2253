"""ClassSR's two routing losses (Kong et al., CVPR 2021, Sec. 3.3, "Class-Loss" and "Average-Loss"), for M branches

``probabilities`` is the softmax output of the classifier, ``(B, M)`` for a batch of B patches.

- Class loss: ``(M - 1) - sum_{i<j} |p_i - p_j|`` per patch, averaged over the batch. It is 0 for
  a one-hot (confident) vector and ``M - 1`` for a uniform one: it pushes each patch to one branch.
- Average loss: ``sum_j |sum_b p_{b,j} - B / M| / (4 B / M)``: 0 when every branch receives the
  same total probability; it keeps the classifier from sending everything to the best branch.

The total objective weighs L1 (of the probability-weighted sum of the branch outputs), class and
average loss 2000 : 1 : 6 (ClassSR's code: 1000 / 0.5 / 3), see
:class:`edgesr.compose.settings.ClassifierConfig`.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["average_loss", "class_loss"]


def _check(probabilities: Tensor) -> None:
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        raise ValueError(f"expected probabilities of shape (batch, branches >= 2), got {tuple(probabilities.shape)}")


def class_loss(probabilities: Tensor) -> Tensor:
    """``mean_b [(M - 1) - sum_{i<j} |p_{b,i} - p_{b,j}|]`` (class loss)."""
    _check(probabilities)
    m = probabilities.shape[1]
    pairs = torch.triu_indices(m, m, offset=1, device=probabilities.device)
    spread = (probabilities[:, pairs[0]] - probabilities[:, pairs[1]]).abs().sum(dim=1)
    return ((m - 1) - spread).mean()


def average_loss(probabilities: Tensor) -> Tensor:
    """``sum_j |sum_b p_{b,j} - B/M| / (4 B/M)`` (average loss)."""
    _check(probabilities)
    batch, m = probabilities.shape
    share = batch / m
    return (probabilities.sum(dim=0) - share).abs().sum() / (4 * share)
