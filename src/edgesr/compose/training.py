"""Training ClassSR's classifier with the branches frozen (Kong et al., CVPR 2021, Sec. 3.3).

Each step draws a batch of LR/HR training patches (:class:`~edgesr.data.patches.PatchSampler`), runs
every frozen branch on it, mixes their outputs with the classifier's softmax probabilities
(``SR = sum_j p_j SR_j``) and minimises ``w_1 L1(SR, HR) + w_c class_loss(p) + w_a average_loss(p)``
(:mod:`edgesr.compose.losses`, weights 1000 / 0.5 / 3 as ClassSR's code, the paper's 2000 : 1 : 6) with
Adam. Every ``log_every`` steps the losses and the class histogram (the argmax branch of the patches of
those steps) are recorded; a branch taking more than ``collapse_share`` of the last period's patches is
reported as a collapse (ClassSR's classifier is known to collapse onto one branch), not hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from edgesr.compose.classifier import PatchClassifier
from edgesr.compose.losses import average_loss, class_loss
from edgesr.compose.settings import ClassifierConfig
from edgesr.data.patches import PatchSampler
from edgesr.tracker import Tracker

__all__ = ["ClassifierTraining", "collapsed_branch", "train_classifier"]


@dataclass
class ClassifierTraining:
    """What a classifier training run leaves: its history and the last period's class histogram."""

    history: list[dict[str, float]] = field(default_factory=list)
    histogram: list[int] = field(default_factory=list)
    collapsed: str | None = None
    """the branch that took more than ``collapse_share`` of the last period's patches, if any"""


def collapsed_branch(histogram: Sequence[int], names: Sequence[str], share: float) -> str | None:
    """The branch holding more than ``share`` of the patches of ``histogram``, or None."""
    total = sum(histogram)
    top = int(np.argmax(histogram))
    return names[top] if total and histogram[top] / total > share else None


def train_classifier(
    classifier: PatchClassifier,
    branches: Sequence[nn.Module],
    names: Sequence[str],
    sampler: PatchSampler,
    cfg: ClassifierConfig,
    tracker: Tracker | None = None,
) -> ClassifierTraining:
    """Train ``classifier`` in place on ``sampler``'s patches; the ``branches`` stay frozen (eval, no grad)."""
    if len(branches) != classifier.fc.out_features or len(names) != len(branches):
        raise ValueError(
            f"{len(branches)} branches ({len(names)} names) for a classifier of {classifier.fc.out_features} outputs"
        )
    for branch in branches:
        branch.eval().requires_grad_(False)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=cfg.lr)
    classifier.train()
    result = ClassifierTraining()
    counts, sums = np.zeros(len(branches), dtype=np.int64), np.zeros(4)
    for iteration in tqdm(range(1, cfg.iterations + 1), desc="compose classifier", unit="it", leave=False):
        lr, hr = sampler.batch(iteration - 1, cfg.batch_size)
        with torch.no_grad():
            outputs = torch.stack([branch(lr) for branch in branches], dim=1)  # (B, M, 3, sH, sW)
        probabilities = F.softmax(classifier(lr), dim=1)
        sr = (probabilities[:, :, None, None, None] * outputs).sum(dim=1)
        losses = torch.stack([F.l1_loss(sr, hr), class_loss(probabilities), average_loss(probabilities)])
        loss = cfg.l1_weight * losses[0] + cfg.class_weight * losses[1] + cfg.average_weight * losses[2]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        counts += np.bincount(probabilities.argmax(dim=1).numpy(), minlength=len(branches))
        sums += np.array([loss.item(), *losses.detach().tolist()])
        if iteration % cfg.log_every == 0 or iteration == cfg.iterations:
            steps = iteration - (result.history[-1]["iteration"] if result.history else 0)
            record = {"iteration": iteration} | dict(
                zip(("loss", "l1", "class_loss", "average_loss"), (sums / steps).tolist(), strict=True)
            )
            record |= {f"share/{name}": count / counts.sum() for name, count in zip(names, counts, strict=True)}
            result.history.append(record)
            result.histogram = counts.tolist()
            if tracker is not None:
                tracker.log_metrics({f"classifier/{k}": v for k, v in record.items() if k != "iteration"}, iteration)
            counts, sums = np.zeros_like(counts), np.zeros_like(sums)
    classifier.eval()
    result.collapsed = collapsed_branch(result.histogram, names, cfg.collapse_share)
    return result
