"""The search objective (paper 001, Eq. 2) and the budget it is held to.

:class:`SearchObjective` adds the resource term to the training loss: ``L1 + lambda R`` with the
paper's fixed lambda, or, for a target budget, a lambda adapted during the search (dual ascent on
``cost <= target``). :func:`project_to_budget` then moves the final architecture into the target's
tolerance band by shifting every searched ``psi`` by one common amount, which keeps the order the
search learned (the most useful channels stay longest) and changes only how many survive; when that
step would close a block and jump past the band, the blocks open above it are held open.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from edgesr.search.extract import clean_gates, strongest_gates_of_open_blocks
from edgesr.search.gates import GATE_THRESHOLD
from edgesr.search.settings import BudgetConfig, FixedLambda, LatencyBudget, MultAddsBudget, NoBudget
from edgesr.search.supernet import Supernet

__all__ = [
    "CostFunction",
    "FinishedSearch",
    "PACE_DECAY",
    "SearchObjective",
    "alive_channels",
    "balanced_per_map",
    "budget_target",
    "finish_search",
    "next_goal",
    "project_to_budget",
    "target_band",
]

#: cost(supernet) -> differentiable resource estimate (Mult-Adds, or ms) of its hard-gated architecture.
CostFunction = Callable[[Supernet], Tensor]

_LOG_LAMBDA_RANGE = (math.log(1e-6), math.log(1e4))

PACE_DECAY = 0.95
"""The decay of the running average of the pressed block's fall per iteration (about the last 20 iterations):
:class:`SearchObjective`."""


def _target(budget: MultAddsBudget | LatencyBudget) -> float:
    return budget.target_g * 1e9 if isinstance(budget, MultAddsBudget) else budget.target_ms


def target_band(budget: MultAddsBudget | LatencyBudget) -> tuple[float, float]:
    """(centre, relative half-width) of the band the final cost or measured latency must land in:
    ``target (1 +- tolerance)``, or for a latency deadline ``target (1 - tolerance) .. target``, whose centre
    is ``target (1 - tolerance / 2)``."""
    if isinstance(budget, LatencyBudget) and budget.deadline:
        return budget.target_ms * (1.0 - budget.tolerance / 2), budget.tolerance / (2 - budget.tolerance)
    return _target(budget), budget.tolerance


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
            ``L + lambda * cost / target_t`` or its hinge, see :class:`edgesr.search.settings.MultAddsBudget`).
        cost: the resource estimate, e.g. ``lambda net: net.mult_adds((720, 1280))`` (Eq. 3).
        full_cost: cost of the unpruned supernet, where a target's ramp starts.
        iterations: length of the search, for the ramp.

    ``log_lambda`` is a buffer, so the trainer's checkpoints carry it and a resumed search continues
    exactly.

    With ``block_pressure: weakest`` (:data:`edgesr.search.settings.BlockPressure`) lambda waits for the gates'
    lag: it does not rise while the pressed block is closing fast enough, its strongest residual gate falling at a
    pace (a running average, :data:`PACE_DECAY`) that takes it to the threshold within the ramp's time per block
    (``ramp_fraction * iterations / num_blocks``): the cost cannot fall until the block closes, and lambda rising
    meanwhile would press the next blocks far harder than needed (issue 13). Issue 13 measured two weaker rules
    in a cpu-long RT search: without the wait lambda rose to 6e-2 while the first block closed and all eight
    blocks closed by iteration 1300; waiting whenever the gate fell in most iterations held lambda at 1.15e-3 while
    that block's write crawled from 32 to 18 channels in 1000 iterations (cost 89 ms against a 52 ms target).
    ``pressed`` (a buffer: the pressed block's index, its strongest gate at the last iteration and the pace)
    carries the state, so a resumed search continues exactly.
    """

    log_lambda: Tensor
    pressed: Tensor

    def __init__(self, budget: BudgetConfig, cost: CostFunction, full_cost: float, iterations: int) -> None:
        super().__init__()
        self.budget, self.cost, self.full_cost, self.iterations = budget, cost, float(full_cost), iterations
        initial = budget.lambda_init if isinstance(budget, MultAddsBudget | LatencyBudget) else 1.0
        self.register_buffer("log_lambda", torch.tensor(math.log(initial), dtype=torch.float64))
        self.register_buffer("pressed", torch.full((3,), math.nan, dtype=torch.float64))

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
        ratio = cost / target
        pressure = torch.relu(ratio - 1.0) if budget.penalty == "hinge" else ratio
        penalty = (self.log_lambda.exp() * pressure).to(loss.dtype)
        if budget.cost_balance == "per_map":
            penalty = balanced_per_map(model, penalty)
        with torch.no_grad():  # dual ascent on cost <= target, after this iteration used the current lambda
            step = budget.lambda_rate * (float(cost) / target - 1.0)
            closing = self._pressed_block_is_closing(model)  # read every iteration, so its pace stays current
            if not (step > 0 and closing):
                self.log_lambda.add_(step).clamp_(*_LOG_LAMBDA_RANGE)
        return loss + penalty

    def _pressed_block_is_closing(self, model: Supernet) -> bool:
        """Whether the block the penalty presses (``block_pressure: weakest``) closes within the ramp's time per
        block at its pace; updates ``pressed``. The pace restarts at 0 when another block is pressed."""
        budget = self.budget
        if model.cfg.block_pressure != "weakest" or not isinstance(budget, MultAddsBudget | LatencyBudget):
            return False
        strongest = model.strongest_residual_gates()
        weakest = model.weakest_open_block(strongest)
        if weakest is None or strongest is None:
            self.pressed.fill_(math.nan)
            return False
        index, before, pace = self.pressed.tolist()
        same = index == weakest
        fall = before - strongest[weakest] if same else 0.0
        pace = PACE_DECAY * (pace if same else 0.0) + (1.0 - PACE_DECAY) * fall
        self.pressed.copy_(torch.tensor([weakest, strongest[weakest], pace]))
        time_per_block = budget.ramp_fraction * self.iterations / len(model.blocks())
        return pace > 0 and (strongest[weakest] - GATE_THRESHOLD) / pace <= time_per_block

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


def balanced_per_map(model: Supernet, penalty: Tensor) -> Tensor:
    """``penalty`` with each gated map's gradient rescaled to the mean gate's (``cost_balance: per_map``).

    Every ``psi`` tensor gates one map (the head, a block's 1x1, Mult or residual channels, the
    after-body conv). Its gradient of ``penalty`` (Eq. 3 through Eq. 4 and the straight-through gates)
    is multiplied by ``kappa / c_m``: ``c_m`` is the mean magnitude of its nonzero entries and ``kappa``
    that mean over the nonzero entries of every map. The value, and so lambda's dual ascent, is
    ``penalty``'s; only the relative price of the maps changes.
    """
    psis = model.gate_parameters()
    if not penalty.requires_grad or not psis:
        return penalty
    grads = torch.autograd.grad(penalty, psis, allow_unused=True)
    grads_by_map = [torch.zeros_like(psi) if grad is None else grad for psi, grad in zip(psis, grads, strict=True)]
    magnitudes = [grad.abs()[grad != 0] for grad in grads_by_map]
    pooled = torch.cat(magnitudes)
    if pooled.numel() == 0:
        return penalty.detach()
    kappa = pooled.mean()
    surrogate = sum(
        (psi * grad * (kappa / magnitude.mean())).sum()
        for psi, grad, magnitude in zip(psis, grads_by_map, magnitudes, strict=True)
        if magnitude.numel()
    )
    surrogate = cast(Tensor, surrogate)
    return penalty.detach() + surrogate - surrogate.detach()


@torch.no_grad()
def project_to_budget(supernet: Supernet, cost: CostFunction, target: float, tolerance: float) -> float:
    """Shift every searched ``psi`` by one amount so the cleaned architecture's cost is nearest ``target``.

    A channel survives a shift ``d`` when ``psi + d > 0.5``; the cost falls as ``d`` falls, so a
    bisection over the gaps between the sorted ``psi`` values finds the shift whose cost is closest to
    ``target``. Gates are cleaned (:func:`clean_gates`) at every candidate.

    Closing a block is a coarse step: a latency search leaves blocks writing one residual channel, and
    when that gate goes its whole block goes (three convs and their fixed costs: 35.4 -> 25.8 ms in
    one step on the default RT search). So when the common shift's nearest candidate misses the band
    ``target * (1 +- tolerance)``, a second bisection runs with every block that is open just above the
    target held open by its strongest gate in each map (:func:`strongest_gates_of_open_blocks`), and the
    candidate nearest the target of the two is kept. Returns its cost; the caller checks it against the
    band.
    """
    params = supernet.gate_parameters()
    if not params:
        return float(cost(supernet))
    original = _gates(supernet)
    values = torch.unique(torch.cat([p.flatten() for p in original]).cpu())
    # Thresholds between consecutive psi values, plus one below all (keep all) and one above (drop all).
    edges = torch.cat([values[:1] - 1.0, (values[1:] + values[:-1]) / 2, values[-1:] + 1.0]).tolist()
    threshold = torch.tensor(GATE_THRESHOLD, dtype=original[0].dtype, device=original[0].device)
    just_open = torch.nextafter(threshold, threshold + 1)  # the smallest psi Eq. 1 keeps, in psi's dtype

    def cost_at(index: int, held: list[Tensor] | None = None) -> float:
        for position, (param, saved) in enumerate(zip(params, original, strict=True)):
            shifted = saved + (GATE_THRESHOLD - edges[index])
            param.copy_(shifted if held is None else torch.where(held[position], shifted.clamp(min=just_open), shifted))
        clean_gates(supernet)
        return float(cost(supernet))

    def nearest(candidates: list[tuple[int, list[Tensor] | None]]) -> tuple[float, int, list[Tensor] | None]:
        """(miss, edge index, gates held open) of the candidate whose cost is nearest the target."""
        return min(((abs(cost_at(*c) / target - 1.0), *c) for c in candidates), key=lambda scored: scored[0])

    free = _bisect(cost_at, target, len(edges))
    best = nearest([(free, None), (free + 1, None)])
    if best[0] > tolerance:
        cost_at(free)  # the architecture just above the target: its open blocks are the ones held
        held = strongest_gates_of_open_blocks(supernet)
        held_index = _bisect(lambda index: cost_at(index, held), target, len(edges))
        best = min(best, nearest([(held_index, held), (held_index + 1, held)]), key=lambda scored: scored[0])
    return cost_at(best[1], best[2])


def _bisect(cost_at: Callable[[int], float], target: float, count: int) -> int:
    """The last of ``count`` edges whose cost is above ``target`` (0 when none is), for a cost that falls
    as the edge index grows; the next edge is at or below it."""
    low, high = 0, count - 1
    while high - low > 1:
        middle = (low + high) // 2
        if cost_at(middle) > target:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class FinishedSearch:
    """What :func:`finish_search` settled on: the final cost, whether it is in the target's band, and for
    a latency budget measured on the device, the measured latency and every round tried (goal, estimate,
    the round's measurement, and its architecture's fastest timing, :func:`_timed_twice`), in order."""

    cost: float
    within_budget: bool
    measured_ms: float | None = None
    rounds: tuple[dict[str, float], ...] = ()


def finish_search(
    supernet: Supernet, budget: BudgetConfig, cost: CostFunction, measure: Callable[[Supernet], float] | None = None
) -> FinishedSearch:
    """Clean the gates and, for a target budget, project them into its band.

    ``measure`` (latency budgets): the found architecture's latency measured whole on the device. An
    estimate is only as good as its model on this architecture, so while the measured latency is outside
    the band the search's gates are projected again to a corrected goal (:func:`next_goal`), at most
    ``budget.verify_rounds`` times. Every candidate is timed at least twice and counts at its fastest
    timing (:func:`_timed_twice`); the rounds stop at one in the band on both. The band is judged on the
    measured latency of the candidate kept (:func:`target_band`: under the target for a deadline): an
    in-band candidate comes first, then one under the band, each the nearest to its centre
    (:func:`_preference`).
    """
    if not isinstance(budget, MultAddsBudget | LatencyBudget):
        clean_gates(supernet)
        return FinishedSearch(float(cost(supernet)), True)
    target, tolerance = target_band(budget)  # the band's centre and half-width
    searched = _gates(supernet)  # each projection starts from the search's gates (a projection cleans them)
    final = project_to_budget(supernet, cost, target, tolerance)
    if measure is None or not isinstance(budget, LatencyBudget):
        return FinishedSearch(final, abs(final / target - 1.0) <= tolerance)

    def miss(candidate: _Candidate) -> float:
        return abs(candidate.measured / target - 1.0)

    def in_band_twice(candidate: _Candidate) -> bool:
        """In the band at its fastest of two timings: a candidate in it on one timing is timed again."""
        if miss(candidate) <= tolerance and len(candidate.measurements) == 1:
            _load_gates(supernet, candidate.gates)
            candidate.measurements.append(measure(supernet))
        return miss(candidate) <= tolerance

    tried = [_Candidate(target, final, _gates(supernet), [measure(supernet)])]
    for _ in range(budget.verify_rounds):
        if in_band_twice(tried[-1]):
            break
        goal = next_goal([(c.goal, c.measured) for c in tried], target)
        _load_gates(supernet, searched)
        final = project_to_budget(supernet, cost, goal, tolerance)
        tried.append(_Candidate(goal, final, _gates(supernet), [measure(supernet)]))
    rounds = [{"goal": c.goal, "estimate": c.cost, "measured_ms": c.measurements[0]} for c in tried]
    distinct = _timed_twice(supernet, tried, measure)
    for row, candidate in zip(rounds, tried, strict=True):
        row["fastest_ms"] = next(d for d in distinct if d.same_architecture(candidate)).measured
    best = min(distinct, key=lambda candidate: _preference(candidate.measured, target, tolerance))
    _load_gates(supernet, best.gates)
    return FinishedSearch(best.cost, miss(best) <= tolerance, best.measured, tuple(rounds))


def _timed_twice(supernet: Supernet, tried: list[_Candidate], measure: Callable[[Supernet], float]) -> list[_Candidate]:
    """The distinct architectures among ``tried``, each with at least two timings, taken at different times.

    Timing noise on a shared machine is one-sided (a busy neighbour, or the heat of the search's own
    training, only slows a run), and a slow phase can outlast the settle: in one default RT search the
    first two rounds read 42.2 and 32.7 ms for subnets that timed 35.1 and 26.7 ms a minute later. So a
    candidate counts at its fastest timing.
    """
    distinct: list[_Candidate] = []
    for candidate in tried:
        twin = next((d for d in distinct if d.same_architecture(candidate)), None)
        if twin is None:
            distinct.append(candidate)
        else:
            twin.measurements.extend(candidate.measurements)
    for candidate in distinct:
        if len(candidate.measurements) == 1:
            _load_gates(supernet, candidate.gates)
            candidate.measurements.append(measure(supernet))
    return distinct


def _preference(measured: float, centre: float, tolerance: float) -> tuple[bool, bool, float]:
    """Sort key of a measured candidate for the band ``centre (1 +- tolerance)``: in the band first, then
    under it (a deadline met), then nearest to its centre."""
    miss = abs(measured / centre - 1.0)
    return miss > tolerance, measured > centre * (1.0 + tolerance), miss


def next_goal(tried: list[tuple[float, float]], target: float) -> float:
    """The estimate goal to project to next, from the (goal, measured) pairs tried so far.

    The measured latency is a rising function of the goal, but not a proportional one (a subnet's fixed
    costs take a larger share as it shrinks). With two or more pairs: the secant through the two measured
    nearest the target (a line, offset included), or, once the pairs bracket the target, through the nearest
    measured on each side (regula falsi), so the goal stays between them: the two nearest can lie on one side
    and give the same goal again (an RT search on an Intel AMX machine, issue 13, projected to 30.30 three
    times, measured 35.9-36.8 ms, between candidates of 30.5 and 35.9 ms around a 31.35-33 ms band). With one
    pair, or a secant that does not rise: the ratio step ``goal * target / measured`` from the nearest.
    """

    def distance(pair: tuple[float, float]) -> float:
        return abs(pair[1] - target)

    below = [pair for pair in tried if pair[1] <= target]
    above = [pair for pair in tried if pair[1] > target]
    if below and above:
        nearest = sorted([min(below, key=distance), min(above, key=distance)], key=distance)
    else:
        nearest = sorted(tried, key=distance)
    goal, measured = nearest[0]
    if len(nearest) > 1:
        other_goal, other_measured = nearest[1]
        if goal != other_goal and (slope := (measured - other_measured) / (goal - other_goal)) > 0:
            secant = goal + (target - measured) / slope
            if secant > 0:
                return secant
    return goal * target / measured


@dataclass(frozen=True)
class _Candidate:
    """One projection of the searched gates and its latencies measured whole on the device."""

    goal: float
    cost: float
    gates: list[Tensor]
    measurements: list[float]

    @property
    def measured(self) -> float:
        """The fastest measurement (timing noise only slows a run, see :func:`_timed_twice`)."""
        return min(self.measurements)

    def same_architecture(self, other: _Candidate) -> bool:
        return all(
            torch.equal(a > GATE_THRESHOLD, b > GATE_THRESHOLD) for a, b in zip(self.gates, other.gates, strict=True)
        )


def _gates(supernet: Supernet) -> list[Tensor]:
    return [p.detach().clone() for p in supernet.gate_parameters()]


@torch.no_grad()
def _load_gates(supernet: Supernet, gates: list[Tensor]) -> None:
    for param, saved in zip(supernet.gate_parameters(), gates, strict=True):
        param.copy_(saved)
