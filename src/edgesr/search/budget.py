"""The search objective (paper 001, Eq. 2) and the budget it is held to.

:class:`SearchObjective` adds the resource term to the training loss: ``L1 + lambda R`` with the
paper's fixed lambda, or, for a target budget, a lambda adapted during the search (dual ascent on
``cost <= target``). :func:`project_to_budget` then moves the final architecture into the target's
tolerance band by shifting every searched ``psi`` by one common amount, which keeps the order the
search learned (the most useful channels stay longest) and changes only how many survive.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from edgesr.search.extract import clean_gates
from edgesr.search.gates import GATE_THRESHOLD
from edgesr.search.settings import BudgetConfig, FixedLambda, LatencyBudget, MultAddsBudget, NoBudget
from edgesr.search.supernet import Supernet

__all__ = [
    "CostFunction",
    "SearchObjective",
    "alive_channels",
    "budget_target",
    "finish_search",
    "project_to_budget",
]

#: cost(supernet) -> differentiable resource estimate (Mult-Adds, or ms) of its hard-gated architecture.
CostFunction = Callable[[Supernet], Tensor]

_LOG_LAMBDA_RANGE = (math.log(1e-6), math.log(1e4))


def _target(budget: MultAddsBudget | LatencyBudget) -> float:
    return budget.target_g * 1e9 if isinstance(budget, MultAddsBudget) else budget.target_ms


def budget_target(budget: BudgetConfig) -> float | None:
    """The target in the cost's unit (Mult-Adds or ms), or None for the fixed-lambda / no-budget modes."""
    return _target(budget) if isinstance(budget, MultAddsBudget | LatencyBudget) else None


def alive_channels(supernet: Supernet) -> dict[str, int]:
    """Alive output channels of every conv (hard gates), e.g. ``{"block3.mult": 41, ...}``."""
    with torch.no_grad():
        return {conv.name: int(conv.alive_out.item()) for conv in supernet.counted_convs()}


class SearchObjective(nn.Module):
    """Eq. 2, ``min L(theta, psi) + lambda R(psi)``, for :func:`edgesr.train.trainer.train`.

    Args:
        budget: ``none`` (L only), ``lambda`` (fixed: ``L + value * cost``) or a target (adapted lambda:
            ``L + lambda * cost / target_t``, see :class:`edgesr.search.settings.MultAddsBudget`).
        cost: the resource estimate, e.g. ``lambda net: net.mult_adds((720, 1280))`` (Eq. 3).
        full_cost: cost of the unpruned supernet, where a target's ramp starts.
        iterations: length of the search, for the ramp.

    ``log_lambda`` is a buffer, so the trainer's checkpoints carry it and a resumed search continues
    exactly.
    """

    log_lambda: Tensor

    def __init__(self, budget: BudgetConfig, cost: CostFunction, full_cost: float, iterations: int) -> None:
        super().__init__()
        self.budget, self.cost, self.full_cost, self.iterations = budget, cost, float(full_cost), iterations
        initial = budget.lambda_init if isinstance(budget, MultAddsBudget | LatencyBudget) else 1.0
        self.register_buffer("log_lambda", torch.tensor(math.log(initial), dtype=torch.float64))

    def target_at(self, iteration: int) -> float | None:
        """The ramped target for ``iteration`` (0-based), or None without a target."""
        budget = self.budget
        if not isinstance(budget, MultAddsBudget | LatencyBudget):
            return None
        return self._ramped_target(budget, iteration)

    def _ramped_target(self, budget: MultAddsBudget | LatencyBudget, iteration: int) -> float:
        target = _target(budget)
        ramp = budget.ramp_fraction * self.iterations
        progress = 1.0 if ramp == 0 else min(1.0, iteration / ramp)
        return self.full_cost + (target - self.full_cost) * progress

    def forward(self, model: Supernet, loss: Tensor, iteration: int) -> Tensor:
        budget = self.budget
        if isinstance(budget, NoBudget):
            return loss
        cost = self.cost(model)
        if isinstance(budget, FixedLambda):
            return loss + budget.value * cost.to(loss.dtype)
        target = self._ramped_target(budget, iteration)
        penalty = (self.log_lambda.exp() * cost / target).to(loss.dtype)
        with torch.no_grad():  # dual ascent on cost <= target, after this iteration used the current lambda
            self.log_lambda.add_(budget.lambda_rate * (float(cost) / target - 1.0)).clamp_(*_LOG_LAMBDA_RANGE)
        return loss + penalty

    def metrics(self, model: Supernet, iteration: int) -> dict[str, float]:
        """What the search logs besides the loss: cost, lambda, target and alive channels per conv."""
        if isinstance(self.budget, NoBudget):
            return {}
        with torch.no_grad():
            cost = float(self.cost(model))
        values = {"search/cost": cost, "search/lambda": self.current_lambda()}
        target = self.target_at(iteration)
        if target is not None:
            values["search/target"] = target
        values |= {f"alive/{name}": float(count) for name, count in alive_channels(model).items()}
        return values

    def current_lambda(self) -> float:
        if isinstance(self.budget, FixedLambda):
            return self.budget.value
        return float(self.log_lambda.exp())


@torch.no_grad()
def project_to_budget(supernet: Supernet, cost: CostFunction, target: float) -> float:
    """Shift every searched ``psi`` by one amount so the cleaned architecture's cost is nearest ``target``.

    A channel survives a shift ``d`` when ``psi + d > 0.5``; the cost falls as ``d`` falls, so a
    bisection over the gaps between the sorted ``psi`` values finds the shift whose cost is closest to
    ``target``. Gates are cleaned (:func:`clean_gates`) at every candidate. Returns the final cost;
    the caller checks it against the budget's tolerance band (one channel is the finest step).
    """
    params = supernet.gate_parameters()
    if not params:
        return float(cost(supernet))
    original = [p.detach().clone() for p in params]
    values = torch.unique(torch.cat([p.flatten() for p in original]).cpu())
    # Thresholds between consecutive psi values, plus one below all (keep all) and one above (drop all).
    edges = torch.cat([values[:1] - 1.0, (values[1:] + values[:-1]) / 2, values[-1:] + 1.0]).tolist()

    def cost_at(index: int) -> float:
        for param, saved in zip(params, original, strict=True):
            param.copy_(saved + (GATE_THRESHOLD - edges[index]))
        clean_gates(supernet)
        return float(cost(supernet))

    low, high = 0, len(edges) - 1  # cost_at(low) >= target >= cost_at(high) in the typical case
    while high - low > 1:
        middle = (low + high) // 2
        if cost_at(middle) > target:
            low = middle
        else:
            high = middle
    best = min((low, high), key=lambda index: abs(cost_at(index) / target - 1.0))
    return cost_at(best)


def finish_search(
    supernet: Supernet, budget: BudgetConfig, cost: CostFunction, measure: Callable[[Supernet], float] | None = None
) -> tuple[float, bool, float | None]:
    """Clean the gates and, for a target budget, project them into its band; returns (cost, within band,
    measured).

    ``measure`` (latency budgets): the found architecture's latency measured whole on the device. An
    estimate is only as good as its model on this architecture, so while the measured latency is outside
    the band the architecture is projected again to ``goal *= target / measured`` (the estimate's error
    there taken as a ratio), at most ``budget.verify_rounds`` times; the band is then judged on the
    measured latency.
    """
    if not isinstance(budget, MultAddsBudget | LatencyBudget):
        clean_gates(supernet)
        return float(cost(supernet)), True, None
    target = goal = _target(budget)
    final = project_to_budget(supernet, cost, goal)
    if measure is None or not isinstance(budget, LatencyBudget):
        return final, abs(final / target - 1.0) <= budget.tolerance, None
    measured = measure(supernet)
    for _ in range(budget.verify_rounds):
        if abs(measured / target - 1.0) <= budget.tolerance:
            break
        goal *= target / measured
        final = project_to_budget(supernet, cost, goal)
        measured = measure(supernet)
    return final, abs(measured / target - 1.0) <= budget.tolerance, measured
