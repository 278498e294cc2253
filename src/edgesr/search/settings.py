"""Typed configuration of the ``search`` section of ``params.yaml`` (FGNAS, paper 001 Sec. 3-4).

``search.sizes`` names the supernets searched (one ``search@<size>`` DVC stage each, FGNAS-S/M/L);
each size overrides the shared ``supernet`` and ``budget``. The budget is the paper's fixed lambda
(Eq. 2), or, beyond the paper, a target: a Mult-Adds budget at 720p or a latency budget on the
deployment runtime (paper 002), for which lambda adapts during the search and the final architecture
is projected into ``target x (1 +- tolerance)``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from edgesr.architectures import ActivationName, MapWidths
from edgesr.schema import SCALES, Scale, StrictModel, distinct_choices

__all__ = [
    "ACTIVATIONS",
    "BlockPressure",
    "BudgetConfig",
    "CountGradient",
    "FixedLambda",
    "LatencyBudget",
    "MultAddsBudget",
    "MultGateGradient",
    "NoBudget",
    "RetrainConfig",
    "SearchConfig",
    "SizeConfig",
    "SupernetConfig",
]

ACTIVATIONS: tuple[ActivationName, ...] = ("relu", "prelu", "tanh")

CountGradient = Literal["sum", "shared"]
"""Eq. 4's backward pass. ``sum`` (the paper): every sub-map of a channel receives the channel's whole
gradient, so each of the three activation branches of a Mult channel is priced as the whole channel,
although the channel is freed only when all three go. ``shared``: the channel's gradient is divided
among its alive sub-maps (``g_i / max(1, sum_j g_j)``), so the branches of a channel, or the head and
residuals writing one trunk channel, share its cost and the shares add up to the channel's gradient."""


MultGateGradient = Literal["scaled", "unscaled"]
"""The loss gradient reaching a Mult map's gates. ``scaled`` (Sec. 3.1 as written): the branches are summed
and scaled by ``1 / len(activations)``, so a Mult gate's loss gradient carries that factor while a 1x1,
residual or head gate's does not, and the cost gradient (Eq. 3) does not carry it either. ``unscaled``: the
Mult gates' loss gradient is multiplied back by ``len(activations)`` in the backward pass only; the forward
function, and so the extracted subnet, are the same. Measured in ``cpu-long`` (8x40 supernet, shared count gradient,
45 G; ``benchmarks/results/cpu-long/fgnas_S_unscaled_8x40.json``): unscaled gives Fig. 4's shape (every Mult map
kept whole, the 1x1 convs at 21-27 of 40 channels, against 34-39 and 22-30 scaled) but Set5 / Set14 37.28 / 32.90
against 37.35 / 32.97 scaled, so ``scaled`` stays the default."""


BlockPressure = Literal["all", "weakest"]
"""Which open blocks' gates the resource term's gradient reaches (the forward cost is the same).
``all`` (the paper): every block's. ``weakest``: only the weakest open block's 1x1, Mult and residual gates, the
block whose strongest residual gate is lowest (the one a common shift of every psi,
:func:`edgesr.search.budget.project_to_budget`, closes first; ties go to the lower index); the other blocks, and the
head and after-body while a block is open, keep the widths their loss gradient gives them. So the search prunes one
block at a time, down to closing it, and then the next; the head and after-body are priced once every block is
closed. Issue 13 item 3: in a plain-residual supernet (8 blocks of width 32,
no 1x1 conv) a latency search with ``all`` thinned every block's residual write alike (the deployed cost is flat in
a write's width until it closes), then closed all eight blocks within 100 iterations, 89.4 -> 17.1 ms against a
55 ms target (``benchmarks/results/cpu-long/rt_plainspace.yaml``). With ``weakest``, the lambda that waits for the
pressed block (:class:`edgesr.search.budget.SearchObjective`) and the hinge penalty, the same search's cost followed
its target (32.7-33.0 ms against 33 for the last 1300 iterations), but the head and after-body gates, priced in every
iteration, were left the weakest and the projection kept one channel of each (``rt_plainspace_weakest.yaml``), so
they are now priced only once no block is open."""


class SupernetConfig(MapWidths, StrictModel):
    """The search space: Table 1's supernet and the ablations of Tables 4 and 5."""

    num_blocks: int = Field(16, ge=1, description="searchable blocks: 16 / 32 / 64 for FGNAS-S / M / L")
    width: int = Field(64, ge=1, description="channels of every conv but the last (Table 1: 64)")
    mult_width: int | None = Field(
        None,
        ge=1,
        description="channels of every block's Mult map (the 3x3 conv before the activations, read by the residual "
        "conv); null = width, as in the paper. Wider than width is WDSR's wide activation (Yu et al. 2018): more "
        "channels before the activation for the same Mult-Adds, a shape the plain residual net cannot take (issue 13 "
        "item 4), and the gates choose each block's expansion",
    )
    activations: list[ActivationName] = Field(default_factory=lambda: list(ACTIVATIONS))
    pointwise: bool = Field(True, description="the block's 1x1 conv (Table 5); false = EDSR's residual block")
    search_channels: bool = Field(True, description="gate head, 1x1, residual and after-body channels (Table 4)")
    search_activations: bool = Field(True, description="one gate per activation per Mult channel (Table 4)")
    bicubic_skip: bool = Field(False, description="add the bicubic-upscaled input to the output (not in paper 001)")
    gate_init: float = Field(
        1.0,
        description="initial psi of every gate; > 0.5 starts with every channel alive. Adam moves every pushed gate "
        "about one learning rate per step, so the cost does not fall until they have travelled gate_init - 0.5, "
        "while the penalty keeps pushing every gate it outweighs; then they cross together (issue 13, cpu-long "
        "from 1.0: 82.7 G fell to 21.7 G against a 67.6 G target; from 0.6 with lambda_init 1e-3 it followed the "
        "target within 26 %)",
    )
    min_mult_channels: int = Field(
        1,
        ge=1,
        description="an activation part of a block's Mult map (the (P)ReLU part or the tanh part: one conv each in "
        "the deploy form) that keeps some but fewer channels than this is closed when the gates are cleaned "
        "(extraction and the budget projection, which holds an open block at this many channels of one part), and a "
        "block left without a part is closed; 1 = the paper. Int8 OpenVINO runs a 3x3 conv 32 -> c in about 4 ms for "
        "every c up to 8 on the 2-core CPU (benchmarks/deploy_breakdown.py), so a block of 1 to 3 Mult channels cost "
        "the default S about 9 ms for 0.4 G; a block that cannot close (1x1 or residual channels not searched) is left "
        "as it is",
    )
    count_gradient: CountGradient = Field(
        "sum",
        description="Eq. 4's backward: sum (the paper) or shared among a channel's alive sub-maps (issue 13: "
        "with sum, cpu-long kept every 1x1 channel and pruned the Mult maps, the reverse of Fig. 4)",
    )
    gate_lr_scale: float = Field(
        1.0,
        ge=0,
        description="the gates' (psi's) learning rate as a factor of the weights' (issue 13 item 4's gate learning "
        "rate lever): Adam moves a pushed gate about one learning rate per step, so this sets how many steps a "
        "gate takes from gate_init to the threshold, against the weights' pace",
    )
    mult_gate_gradient: MultGateGradient = Field(
        "scaled",
        description="the Mult gates' loss gradient: scaled by Sec. 3.1's 1 / len(activations) (the paper) or "
        "unscaled (multiplied back in the backward pass only; issue 13 item 4's 1/3-scaling lever)",
    )

    block_pressure: BlockPressure = Field(
        "all", description="which open blocks' gates the resource term's gradient reaches (BlockPressure)"
    )

    @field_validator("activations")
    @classmethod
    def _distinct_activations(cls, activations: list[str]) -> list[str]:
        return distinct_choices(activations, ACTIVATIONS, "activation")

    @model_validator(mode="after")
    def _pressure_has_residual_gates(self) -> SupernetConfig:
        if self.block_pressure == "weakest" and not self.search_channels:
            raise ValueError(
                "block_pressure 'weakest' ranks the blocks by their residual gates, which exist only with "
                "search_channels: true; set search_channels: true or block_pressure: all"
            )
        return self


class NoBudget(StrictModel):
    """No resource term: objective = L1 (Table 4 rows 1 and 3)."""

    type: Literal["none"] = "none"


class FixedLambda(StrictModel):
    """Eq. 2 with a fixed lambda: ``L1 + value * R``, R in Mult-Adds (paper: 1e-9, Sec. 4.1)."""

    type: Literal["lambda"] = "lambda"
    value: float = Field(1e-9, ge=0)


class _TargetBudget(StrictModel):
    """A budget that lambda is adapted to (dual ascent on the budget constraint).

    The objective is ``L1 + lambda * cost / target_t`` (``penalty: linear``) or
    ``L1 + lambda * max(cost / target_t - 1, 0)`` (``penalty: hinge``: nothing pushes the cost below the
    target, so the search does not overshoot it); after every iteration
    ``log lambda += lambda_rate * (cost / target_t - 1)`` (the hard, forward cost), so lambda grows
    while the architecture is over budget and shrinks under it. ``target_t`` falls linearly from the
    full supernet's cost to ``target`` over the first ``ramp_fraction`` of the search, so channels are
    pruned gradually while the weights adapt. At the end the architecture is projected into
    ``target * (1 +- tolerance)`` (:func:`edgesr.search.budget.project_to_budget`).
    """

    tolerance: float = Field(0.05, gt=0, lt=1)
    lambda_init: float = Field(0.05, gt=0, description="lambda at the first iteration (the dual ascent adapts it)")
    lambda_rate: float = Field(0.02, gt=0)
    ramp_fraction: float = Field(0.5, ge=0, le=1)
    penalty: Literal["linear", "hinge"] = Field(
        "linear", description="linear: lambda * cost / target; hinge: lambda * max(cost / target - 1, 0) (issue 13)"
    )
    cost_balance: Literal["eq3", "per_map"] = Field(
        "eq3",
        description="eq3: each gate receives the penalty's own gradient, so a channel is priced by what it costs in "
        "Eq. 3; per_map: each gated map's (each psi tensor's) penalty gradient is rescaled so that its mean magnitude "
        "equals the mean over all gates, so a channel of every map is priced the same and, under Adam's per-gate "
        "step, the balance of loss and penalty ranks channels by their loss gradient alone (issue 13: the cost of a "
        "1x1 channel and of a Mult channel differ by up to 9x); the cost, its target and lambda are unchanged",
    )


class MultAddsBudget(_TargetBudget):
    """Target Mult-Adds (G) for a 1280x720 output, counted as Eq. 3 (= the subnet's counted Mult-Adds)."""

    type: Literal["mult_adds"] = "mult_adds"
    target_g: float = Field(gt=0)


class LatencyBudget(_TargetBudget):
    """Target latency (ms) of the deployed network for a 1280x720 output on OpenVINO, estimated by the
    whole-network model measured on this machine (:mod:`edgesr.search.network_latency`)."""

    type: Literal["latency"] = "latency"
    target_ms: float = Field(gt=0)
    runtime: Literal["openvino"] = "openvino"
    precision: Literal["int8", "f32"] = Field("int8", description="the deployed precision (int8: NNCF, as quantize)")
    threads: int = Field(2, ge=1)
    channel_step: int = Field(8, ge=1, description="the conv table measures every channel_step channels")
    fit_subnets: int = Field(20, ge=5, description="random subnets measured whole to fit the non-conv part")
    settle_s: float = Field(
        45.0,
        ge=0,
        description="idle seconds before timing whole networks (the model's fit, the first measurement of the found "
        "subnet): on a 2-core VM a subnet timed right after PyTorch training ran 1.35x slow, and at speed after 45 s",
    )
    verify_rounds: int = Field(
        3,
        ge=0,
        description="the found subnet is measured whole; while outside the band, re-project to a goal corrected "
        "by the measurements (a secant step), at most this many times, keeping the nearest (0: trust the estimate)",
    )
    deadline: bool = Field(
        True,
        description="the target is a frame deadline: the band is target x (1 - tolerance) .. target, so the measured "
        "latency kept is at most the target (false: target x (1 +- tolerance))",
    )


BudgetConfig = Annotated[NoBudget | FixedLambda | MultAddsBudget | LatencyBudget, Field(discriminator="type")]


class SizeConfig(StrictModel):
    """One searched size (FGNAS-S / M / L): overrides of the shared supernet and budget."""

    supernet: dict[str, Any] = Field(default_factory=dict)
    budget: BudgetConfig | None = None


class RetrainConfig(StrictModel):
    """Retraining the searched subnets from scratch (Sec. 4.1), one ``retrain@<size>-<scale>`` stage each."""

    scales: list[Scale] = Field(default_factory=lambda: list(SCALES))
    train: dict[str, Any] = Field(default_factory=dict, description="overrides of the `train` section")


class SearchConfig(StrictModel):
    """The ``search`` section: shared supernet and budget, the sizes, the search and retrain runs."""

    supernet: SupernetConfig = SupernetConfig()
    budget: BudgetConfig = FixedLambda()
    output_hw: tuple[int, int] = Field((720, 1280), description="output size the budget is counted at (H, W)")
    sizes: dict[str, SizeConfig] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict, description="overrides of `train` for the search runs")
    retrain: RetrainConfig = RetrainConfig()

    @field_validator("sizes")
    @classmethod
    def _valid_names(cls, sizes: dict[str, SizeConfig]) -> dict[str, SizeConfig]:
        for name in sizes:
            if not name.replace("_", "").isalnum():
                raise ValueError(f"size name '{name}' must use letters, digits or '_' (it names stages and folders)")
        return sizes

    @model_validator(mode="after")
    def _sizes_build(self) -> SearchConfig:
        for size in self.sizes:
            try:
                self.supernet_for(size)
            except ValidationError as err:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
                raise ValueError(f"search.sizes.{size}.supernet: {problems}") from None
        return self

    def supernet_for(self, size: str) -> SupernetConfig:
        """The shared supernet with ``sizes[size].supernet`` merged over it."""
        return SupernetConfig.model_validate(self.supernet.model_dump() | self.sizes[size].supernet)

    def budget_for(self, size: str) -> BudgetConfig:
        return self.sizes[size].budget or self.budget
