"""Stage ``search@<size>``: FGNAS supernet search for one size (paper 001, Sec. 3.2 and 4.1).

Trains the supernet's weights and gate parameters jointly on ``L1 + lambda R`` (Eq. 2), cleans and,
for a target budget, projects the final gates into the budget's tolerance band (a latency budget: judged
on the found subnet measured whole, :func:`edgesr.search.budget.finish_search`), then writes to
``<paths.search>/<size>/``: ``architecture.json`` (the searched subnet, :class:`FGNASArchitecture`),
``supernet.pt`` (final supernet weights and gates, ``weights_only`` loadable), the trainer's ``last.pt`` /
``best.pt`` / ``history.json``; ``metrics/search/<size>.json`` and ``plots/search/<size>.csv``. MLflow
gets the loss, R (or the latency estimate), lambda, the alive channels of every conv over time and
validation PSNR. The architecture picture (Fig. 4 style) and the search curves are drawn by the
``figures`` stage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgesr.artifacts import ARCHITECTURE_FILE, SUPERNET_FILE, search_dir, training_paths
from edgesr.config import ConfigError, Params
from edgesr.files import atomic_write, write_json, write_text
from edgesr.kernels import with_native_kernels
from edgesr.models.fgnas import FGNASArchitecture
from edgesr.search.budget import CostFunction, SearchObjective, alive_channels, budget_target, finish_search
from edgesr.search.extract import extract_architecture, extract_subnet
from edgesr.search.latency_table import lr_size
from edgesr.search.settings import BudgetConfig, LatencyBudget, MultAddsBudget
from edgesr.search.supernet import Supernet
from edgesr.train.run import history_csv, recorded_run, training_data, training_data_hash
from edgesr.train.trainer import train, validate

SEARCH_COLUMNS = ("loss", "search/cost", "search/lambda", "val_psnr")


@dataclass(frozen=True)
class SearchResult:
    """What a finished search found: the architecture and its cost against the budget."""

    architecture: FGNASArchitecture
    mult_adds: int
    cost: float
    target: float | None
    within_budget: bool
    val_psnr: float
    measured_ms: float | None = None  # a latency budget's found subnet, measured whole
    verify_rounds: list[dict[str, float]] = field(default_factory=list)  # (goal, estimate, measured) per projection


def cost_function(
    budget: BudgetConfig, supernet: Supernet, output_hw: tuple[int, int], float_modules: Sequence[str] = ()
) -> CostFunction:
    """Eq. 3's Mult-Adds at ``output_hw``, or the deployed network's latency estimate (paper 002, issue 13),
    int8 with ``float_modules`` (``quantize.float_modules``) kept in float as the quantize stage keeps them."""
    if isinstance(budget, LatencyBudget):
        from edgesr.search.network_latency import build_network_model

        model = with_native_kernels(  # measured as deployed: without the training's AVX2 pin (edgesr.kernels)
            build_network_model,
            supernet.cfg,
            supernet.scale,
            output_hw,
            precision=budget.precision,
            threads=budget.threads,
            step=budget.channel_step,
            fit_subnets=budget.fit_subnets,
            float_modules=float_modules,
            settle_s=budget.settle_s,
        )
        return model.estimate_ms
    return lambda net: net.mult_adds(output_hw)


def latency_measure(
    budget: LatencyBudget, scale: int, output_hw: tuple[int, int], float_modules: Sequence[str] = ()
) -> Callable[[Supernet], float]:
    """The latency (ms) of a supernet's current subnet, deployed as the budget says and measured whole; the
    first measurement, right after the search's training, waits ``budget.settle_s`` idle."""
    from edgesr.search import network_latency

    calls = 0

    def measure(supernet: Supernet) -> float:
        nonlocal calls
        calls += 1
        return with_native_kernels(  # as deployed: without the training's AVX2 pin
            network_latency.measure_networks_ms,
            [extract_subnet(supernet).eval()],
            lr_size(scale, output_hw),
            precision=budget.precision,
            threads=budget.threads,
            float_modules=float_modules,
            settle_s=budget.settle_s if calls == 1 else 0.0,
            desc="timing the found subnet",
        )[0]

    return measure


def run(params: Params, size: str, root: Path = Path(".")) -> SearchResult:
    """Search ``params.search.sizes[size]`` at ``params.scale``; resumes an interrupted search."""
    cfg = params.search
    if size not in cfg.sizes:
        known = ", ".join(cfg.sizes) or "none"
        raise ConfigError(f"no size '{size}' in params.yaml `search.sizes`; known: {known}")
    supernet_cfg, budget, train_cfg = cfg.supernet_for(size), cfg.budget_for(size), params.search_train_config()
    prepared, out_dir = root / params.paths.prepared, search_dir(params, size, root)
    torch.manual_seed(train_cfg.seed)
    supernet = Supernet(supernet_cfg, params.scale)
    cost = cost_function(budget, supernet, cfg.output_hw, params.quantize.float_modules)
    measure = None
    if isinstance(budget, LatencyBudget) and budget.verify_rounds:
        measure = latency_measure(budget, params.scale, cfg.output_hw, params.quantize.float_modules)
    with torch.no_grad():
        full_cost = float(cost(supernet))
    objective = SearchObjective(budget, cost, full_cost, train_cfg.iterations)
    sampler, val_pairs = training_data(prepared, params.scale, train_cfg)
    settings = {
        "supernet": supernet_cfg.model_dump(mode="json"),
        "budget": budget.model_dump(mode="json"),
        "output_hw": list(cfg.output_hw),
    }
    data = training_data_hash(prepared, params.scale)
    metadata: dict[str, object] = {"name": size, "scale": params.scale, "search": settings, "data_hash": data}
    scale, experiment = params.scale, params.tracking.experiment
    kernels = torch.backends.cpu.get_cpu_capability()  # AVX2 when pinned (edgesr.kernels)
    stage_params: dict[str, object] = {
        "search": settings,
        "train": train_cfg.model_dump(mode="json"),
        "scale": scale,
        "cpu_kernels": kernels,
    }
    with recorded_run(f"search@{size}", out_dir, train_cfg, scale, metadata, stage_params, experiment, root) as tracker:
        result = train(
            supernet,
            sampler,
            val_pairs,
            train_cfg,
            scale,
            out_dir,
            tracker=tracker,
            metadata=metadata,
            objective=objective,
            lr_scale=supernet.lr_scale,
        )
        found = _finish(supernet, budget, cost, val_pairs, scale, measure)
        if tracker is None:  # not rank 0: nothing to record
            return found
        if not found.within_budget and isinstance(budget, MultAddsBudget | LatencyBudget):  # only targets miss
            what, final = ("cost", found.cost) if found.measured_ms is None else ("measured latency", found.measured_ms)
            band = f"+-{budget.tolerance:.0%}"
            if isinstance(budget, LatencyBudget) and budget.deadline:
                band = f"(a deadline: its band is -{budget.tolerance:.0%} .. 0)"
            print(
                f"search@{size}: the final {what} {final:.4g} is outside target {found.target:.4g} {band}; "
                "search longer (search.train.iterations), raise lambda_rate or verify_rounds"
            )
        write_text(out_dir / ARCHITECTURE_FILE, found.architecture.model_dump_json(indent=1) + "\n")
        atomic_write(out_dir / SUPERNET_FILE, lambda t: torch.save(supernet.state_dict(), t))
        summary = {
            "mult_adds_g": found.mult_adds / 1e9,
            "cost": found.cost,
            "target": found.target,
            "within_budget": found.within_budget,
            "measured_ms": found.measured_ms,
            "verify_rounds": found.verify_rounds,
            "val_psnr_y": found.val_psnr,
            "full_cost": full_cost,
            "iterations": result.final_iteration,
            "alive": alive_channels(supernet),
        }
        reports = training_paths(params, "search", size, root)
        write_json(reports.metrics_file, summary)
        write_text(reports.plot_file, history_csv(result.history, SEARCH_COLUMNS))
        tracker.log_metrics({f"final/{k}": float(v) for k, v in summary.items() if isinstance(v, int | float)})
        tracker.log_artifact(out_dir / ARCHITECTURE_FILE)
    return found


def _finish(
    supernet: Supernet,
    budget: BudgetConfig,
    cost: CostFunction,
    val_pairs: list,
    scale: int,
    measure: Callable[[Supernet], float] | None,
) -> SearchResult:
    finished = finish_search(supernet, budget, cost, measure)
    architecture = extract_architecture(supernet)
    with torch.no_grad():
        mult_adds = round(float(supernet.mult_adds()))
    return SearchResult(
        architecture=architecture,
        mult_adds=mult_adds,
        cost=finished.cost,
        target=budget_target(budget),
        within_budget=finished.within_budget,
        val_psnr=validate(supernet, val_pairs, scale),
        measured_ms=finished.measured_ms,
        verify_rounds=list(finished.rounds),
    )
