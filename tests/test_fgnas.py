"""FGNAS (paper 001): gates (Eq. 1), union count (Eq. 4), regularizer (Eq. 3), objective (Eq. 2),
extraction invariants, budget projection and a resumable search with the trainer."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from edgesr.complexity import count_complexity
from edgesr.data.patches import PatchSampler
from edgesr.deploy.fgnas_form import (
    activation_parts,
    channel_branches,
    deploy_form,
    merges_head,
    merges_pointwise,
)
from edgesr.models import FGNASArchitecture, FGNASConfig, build_model
from edgesr.models.bicubic import Bicubic, BicubicPhases
from edgesr.models.fgnas import extended_head
from edgesr.search.budget import SearchObjective, project_to_budget
from edgesr.search.extract import clean_gates, extract_architecture, extract_subnet
from edgesr.search.gates import count_alive, st_gate
from edgesr.search.settings import FixedLambda, MultAddsBudget, NoBudget, SupernetConfig
from edgesr.search.supernet import Supernet, bicubic_mult_adds
from edgesr.train.settings import CosineSchedule
from edgesr.train.trainer import train
from tests.ddp_worker import Interrupted, interrupt_at, tiny_config, tiny_data

LR_PIXELS_X2 = 360 * 640  # the LR frame of a 1280x720 output at x2
RING_X2 = 362 * 642 - LR_PIXELS_X2  # the head and the first block's 1x1 run one pixel beyond it (extended_head)


def _randomise_gates(net: Supernet, seed: int, open_fraction: float = 0.6) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for psi in net.gate_parameters():
            psi.copy_(torch.rand(psi.shape, generator=generator) + (open_fraction - 0.5))


def test_straight_through_gate_is_binary_forward_and_sigmoid_backward():
    psi = torch.tensor([-1.0, 0.2, 0.5, 0.5001, 2.0], requires_grad=True)
    gate = st_gate(psi)
    assert gate.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0]  # Eq. 1: 1[psi > 0.5]
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    (gate * weights).sum().backward()
    sigmoid = torch.sigmoid(psi.detach())
    torch.testing.assert_close(psi.grad, weights * sigmoid * (1 - sigmoid))


def test_count_alive_is_a_union_forward_and_a_sum_backward():
    gates = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]], requires_grad=True)
    alive = count_alive(gates)
    assert alive.tolist() == [0.0, 1.0, 1.0]  # Eq. 4: 1[sum_i g_i >= 1]
    (alive * torch.tensor([2.0, 3.0, 5.0])).sum().backward()
    # backward of sum_i g_i: every sub-map of a channel receives that channel's gradient
    assert gates.grad.tolist() == [[2.0] * 3, [3.0] * 3, [5.0] * 3]


def test_count_alive_shared_divides_each_channels_gradient_among_its_alive_sub_maps():
    gates = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], requires_grad=True)
    alive = count_alive(gates, "shared")
    assert alive.tolist() == [0.0, 1.0, 1.0, 1.0]  # the forward is Eq. 4's union either way
    (alive * torch.tensor([2.0, 3.0, 6.0, 4.0])).sum().backward()
    # the last alive sub-map carries the whole channel; k alive sub-maps carry 1/k each; dead ones nothing
    assert gates.grad.tolist() == [[0.0] * 3, [3.0, 0.0, 0.0], [2.0] * 3, [2.0, 2.0, 0.0]]


def test_shared_count_gradient_prices_a_mult_branch_at_a_third_of_its_channel():
    """Same regularizer value (Eq. 3), but with every branch alive each Mult gate sees 1/3 of the sum's gradient."""
    grads, costs = {}, {}
    for mode in ("sum", "shared"):
        torch.manual_seed(0)
        net = Supernet(SupernetConfig(num_blocks=2, width=8, count_gradient=mode), scale=2)
        cost = net.mult_adds()
        cost.backward()
        costs[mode], grads[mode] = float(cost), net.blocks()[0].psi_mult.grad
    assert costs["sum"] == costs["shared"]
    torch.testing.assert_close(grads["shared"], grads["sum"] / 3)


def test_unscaled_mult_gate_gradient_multiplies_only_the_mult_gates_loss_gradient_by_the_activation_count():
    """Sec. 3.1's 1/3 scaling lever: same forward, the Mult gates' loss gradient x len(activations), every other
    gradient (weights, 1x1 / residual / head gates, and the Mult gates' Eq. 3 cost gradient) unchanged."""
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    outputs, loss_grads, cost_grads = {}, {}, {}
    for mode in ("scaled", "unscaled"):
        torch.manual_seed(0)
        net = Supernet(SupernetConfig(num_blocks=2, width=8, mult_gate_gradient=mode), scale=2)
        outputs[mode] = net(x)
        outputs[mode].square().mean().backward()
        loss_grads[mode] = {name: p.grad.clone() for name, p in net.named_parameters()}
        net.zero_grad()
        net.mult_adds().backward()
        cost_grads[mode] = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
    assert torch.equal(outputs["scaled"], outputs["unscaled"])
    assert cost_grads["scaled"].keys() == cost_grads["unscaled"].keys()
    for name, grad in cost_grads["scaled"].items():
        assert torch.equal(grad, cost_grads["unscaled"][name]), name
    mult_gates = [name for name in loss_grads["scaled"] if name.endswith("psi_mult")]
    assert len(mult_gates) == 2
    for name, grad in loss_grads["scaled"].items():
        expected = 3 * grad if name in mult_gates else grad
        torch.testing.assert_close(loss_grads["unscaled"][name], expected, msg=name)
    assert loss_grads["scaled"]["body.0.psi_mult"].abs().sum() > 0


def test_weakest_block_pressure_routes_the_cost_gradient_to_one_blocks_gates():
    """Same Eq. 3 value; of the blocks, only the open block with the lowest strongest residual gate gets its
    gradient, on its 1x1, Mult and residual gates; the head's and after-body's gates get it only once every block is
    closed."""
    costs, grads = {}, {}
    for pressure in ("all", "weakest"):
        torch.manual_seed(0)
        net = Supernet(SupernetConfig(num_blocks=4, width=8, block_pressure=pressure), scale=2)
        with torch.no_grad():
            for block, strongest in zip(net.blocks(), (0.9, 0.4, 0.7, 0.8), strict=True):  # block 1 is closed
                block.psi_residual.copy_(torch.linspace(0.3, strongest, 8))
        cost = net.mult_adds()
        cost.backward()
        costs[pressure] = float(cost.detach())
        grads[pressure] = {
            name: psi.grad is not None and bool(psi.grad.any()) for name, psi in net.named_parameters() if "psi" in name
        }
        assert net.weakest_open_block() == 2
    assert costs["all"] == costs["weakest"]
    assert all(grads["all"][name] for name in grads["all"] if not name.startswith("body.1."))
    assert {name for name, pushed in grads["weakest"].items() if pushed} == {
        "body.2.psi_pointwise",
        "body.2.psi_mult",
        "body.2.psi_residual",
    }
    with torch.no_grad():
        for block in net.blocks():
            block.psi_residual.fill_(0.3)
    net.zero_grad()
    net.mult_adds().backward()
    assert net.weakest_open_block() is None
    assert net.psi_head.grad.any() and net.psi_after_body.grad.any()  # every gate is priced, as under ``all``


@pytest.mark.parametrize("pressure", ["all", "weakest"])
def test_under_weakest_block_pressure_the_cost_closes_blocks_one_at_a_time(pressure):
    """Adam moves every gate the cost outweighs by about its rate per step, so with the cost alone pushing, every
    block closes in the same step under ``all``; ``weakest`` closes them in turn."""
    torch.manual_seed(0)
    net = Supernet(SupernetConfig(num_blocks=4, width=8, pointwise=False, gate_init=0.6, block_pressure=pressure), 2)
    optimizer = torch.optim.Adam([p for block in net.blocks() for p in (block.psi_mult, block.psi_residual)], lr=0.01)
    open_blocks = []
    for _ in range(60):
        optimizer.zero_grad()
        (net.mult_adds((24, 24)) / 1e4).backward()
        optimizer.step()
        open_blocks.append(
            sum(bool((block.psi_residual > 0.5).any() and (block.psi_mult > 0.5).any()) for block in net.blocks())
        )
    steps = sorted(set(open_blocks), reverse=True)
    assert steps == ([4, 0] if pressure == "all" else [4, 3, 2, 1, 0])


@pytest.mark.parametrize("pressure", ["all", "weakest"])
def test_under_weakest_block_pressure_lambda_waits_while_the_pressed_block_closes_in_time(pressure):
    """Over budget, lambda rises (Eq. 2's dual ascent), except under ``weakest`` while the pressed block's strongest
    residual gate falls at a pace that reaches the threshold within the ramp's time per block (here 300 iterations /
    3 blocks); a slow fall, or a gate that stops, lets it rise; under budget it falls either way."""
    torch.manual_seed(0)
    net = Supernet(SupernetConfig(num_blocks=3, width=4, pointwise=False, gate_init=0.6, block_pressure=pressure), 2)
    full = float(net.mult_adds().detach())
    budget = MultAddsBudget(target_g=full / 1.25e9, ramp_fraction=1.0)
    objective = SearchObjective(budget, lambda supernet: supernet.mult_adds(), full, 300)

    def lambda_rises(strongest_gate: float) -> bool:
        with torch.no_grad():
            net.blocks()[1].psi_residual.fill_(strongest_gate)  # block 1 stays the weakest open block
        before = float(objective.log_lambda)
        objective(net, torch.zeros(()), 300)  # the ramp is over: cost / target = 1.25
        step = float(objective.log_lambda) - before
        assert step in (0.0, pytest.approx(budget.lambda_rate * 0.25))
        return step > 0

    with torch.no_grad():
        for block in net.blocks():
            block.psi_residual.fill_(0.9)
    waits = pressure == "weakest"
    slow = [lambda_rises(0.88 - 0.0005 * step) for step in range(60)]  # 0.38 above the threshold at 0.0005 a step: 760
    assert slow == [True] * 60
    fast = [lambda_rises(0.85 - 0.01 * step) for step in range(30)]  # reaches it within 35 iterations
    assert fast[:3] == [True] * 3 and fast[-10:] == [not waits] * 10
    stopped = [lambda_rises(0.55) for _ in range(60)]  # the pace decays until 0.05 takes longer than 100 iterations
    assert stopped[0] == (not waits) and stopped[-1]
    with torch.no_grad():
        for closed in (0, 2):  # under budget now: lambda falls in both modes
            net.blocks()[closed].psi_residual.fill_(0.4)
            net.blocks()[closed].psi_mult.fill_(0.4)
    before = float(objective.log_lambda)
    objective(net, torch.zeros(()), 300)
    assert float(objective.log_lambda) < before


def test_weakest_block_pressure_needs_searched_residual_gates():
    with pytest.raises(ValidationError, match="block_pressure 'weakest' .* set search_channels: true"):
        SupernetConfig(search_channels=False, block_pressure="weakest")


def test_full_supernet_regularizer_equals_table_1_closed_form_and_the_counter():
    net = Supernet(SupernetConfig(), scale=2)  # Table 1: 16 blocks of width 64, 12 outputs
    per_block = (1 + 9 + 9) * 64 * 64  # 1x1, Mult 3x3, residual 3x3
    ring = RING_X2 * (9 * 3 * 64 + 1 * 64 * 64)  # the head and block 0's 1x1 on the one-pixel ring
    expected = LR_PIXELS_X2 * (9 * 3 * 64 + 16 * per_block + 9 * 64 * 64 + 9 * 64 * 12) + ring
    assert net.mult_adds().item() == expected == 297_374_515_200 + 11_671_296  # paper Table 4 (1): 292.3 G
    assert count_complexity(net, 2).mult_adds == expected


def test_wide_activation_supernet_regularizer_is_eq_3_with_the_mult_map_width():
    """Eq. 3 with ``C_m`` Mult channels: per block 1x1 C -> C, Mult 3x3 C -> C_m, residual 3x3 C_m -> C."""
    width, mult = 16, 48
    net = Supernet(SupernetConfig(num_blocks=4, width=width, mult_width=mult), scale=2)
    per_block = 1 * width * width + 9 * width * mult + 9 * mult * width
    ring = RING_X2 * (9 * 3 * width + 1 * width * width)
    expected = LR_PIXELS_X2 * (9 * 3 * width + 4 * per_block + 9 * width * width + 9 * width * 12) + ring
    assert net.mult_adds().item() == expected == count_complexity(net, 2).mult_adds
    assert [tuple(p.shape) for p in net.body[0].parameters() if p.dim() == 2] == [(mult, 3)]  # psi_mult
    assert net.body[0].psi_residual.shape == net.body[0].psi_pointwise.shape == (width,)


def test_regularizer_counts_trunk_as_union_of_head_and_residuals():
    cfg = SupernetConfig(num_blocks=2, width=4, activations=["relu", "tanh"])
    net = Supernet(cfg, scale=2)
    with torch.no_grad():
        net.psi_head.copy_(torch.tensor([1.0, 1.0, 0.0, 0.0]))  # head keeps channels {0, 1}
        net.body[0].psi_pointwise.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))  # 1 channel
        net.body[0].psi_mult.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]))  # union 3
        net.body[0].psi_residual.copy_(torch.tensor([0.0, 1.0, 1.0, 0.0]))  # writes {1, 2}
        net.body[1].psi_pointwise.copy_(torch.tensor([1.0, 1.0, 0.0, 0.0]))  # 2
        net.body[1].psi_mult.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))  # 1
        net.body[1].psi_residual.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))  # writes {3}
        net.psi_after_body.copy_(torch.tensor([0.0, 0.0, 1.0, 0.0]))  # {2}; last reads {0, 1} | {2}
    terms = [
        9 * 3 * 2,  # head: 3 -> 2
        1 * 2 * 1, 9 * 1 * 3, 9 * 3 * 2,  # block 0: trunk {0,1}: 2 -> 1 -> 3 -> 2
        1 * 3 * 2, 9 * 2 * 1, 9 * 1 * 1,  # block 1: trunk {0,1,2}: 3 -> 2 -> 1 -> 1
        9 * 4 * 1,  # after body: trunk {0,1,2,3} -> 1
        9 * 3 * 12,  # last: {0,1,2} -> 12
    ]  # fmt: skip
    assert net.mult_adds().item() == LR_PIXELS_X2 * sum(terms) + RING_X2 * (9 * 3 * 2 + 1 * 2 * 1)


# dR/dgamma_head: head out (9*3), each block's 1x1 input (1*4), after-body input (9*4), last input (9*12).
# Shared: block b's trunk channel is written by the head and b residuals, the after-body input by the head
# and 3 residuals, conv_last's input by the head and conv_after_body; the head carries 1/k of each.
@pytest.mark.parametrize(
    ("mode", "per_pixel"),
    [("sum", 9 * 3 + 3 * 1 * 4 + 9 * 4 + 9 * 12), ("shared", 9 * 3 + 4 * (1 + 1 / 2 + 1 / 3) + 9 * 4 / 4 + 9 * 12 / 2)],
)
def test_regularizer_gradient_of_a_head_gate_sums_every_conv_that_counts_it(mode, per_pixel):
    cfg = SupernetConfig(num_blocks=3, width=4, count_gradient=mode)
    net = Supernet(cfg, scale=2)
    net.mult_adds().backward()
    sigmoid = torch.sigmoid(torch.tensor(cfg.gate_init))
    slope = float(sigmoid * (1 - sigmoid))
    ring = RING_X2 * (9 * 3 + 1 * 4)  # the head's output and block 0's 1x1 input (the head alone writes it)
    assert net.psi_head.grad.tolist() == pytest.approx([(LR_PIXELS_X2 * per_pixel + ring) * slope] * 4, rel=1e-6)


@pytest.mark.parametrize(
    ("overrides", "scale"),
    [
        ({}, 2),
        ({"search_activations": False}, 2),  # Table 4 (2): channel search only
        ({"search_channels": False}, 3),  # Table 4 (3): activation search only
        ({"pointwise": False, "activations": ["relu"]}, 2),  # Table 5 (1): EDSR's residual block
        ({"bicubic_skip": True}, 4),
        ({"mult_width": 30}, 2),  # wide activation (WDSR): Mult maps wider than the trunk
        ({"mult_width": 30, "pointwise": False, "activations": ["relu"], "search_activations": False}, 3),
    ],
)
def test_extracted_subnet_equals_hard_gated_supernet_and_counts_as_the_regularizer(overrides, scale):
    torch.manual_seed(0)
    net = Supernet(SupernetConfig(num_blocks=4, width=12, **overrides), scale)
    _randomise_gates(net, seed=1, open_fraction=0.45)
    subnet = extract_subnet(net)  # cleans the gates first
    x = torch.rand(2, 3, 13, 11)
    with torch.no_grad():
        assert (net(x) - subnet(x)).abs().max().item() < 1e-5
    assert count_complexity(subnet, scale).mult_adds == round(net.mult_adds().item())
    assert count_complexity(subnet, scale).params < count_complexity(net, scale).params
    # the deploy form (no Gather / Pad / masks, one pixel shuffle) is the same function
    with torch.no_grad():
        for block in subnet.blocks():  # per-channel PReLU slopes, so the relu + prelu folding is tested
            if block.prelu is not None:
                block.prelu.weight.uniform_(-0.5, 0.8)
        deployed = deploy_form(subnet)
        assert (deployed(x) - subnet(x)).abs().max().item() < 1e-5
    # the architecture round-trips through JSON into a zoo model of the same size
    arch = FGNASArchitecture.model_validate_json(subnet.arch.model_dump_json())
    rebuilt = build_model(FGNASConfig(architecture=arch, bicubic_skip=overrides.get("bicubic_skip", False)), scale)
    assert count_complexity(rebuilt, scale) == count_complexity(subnet, scale)


def test_cleaning_closes_blocks_whose_work_reaches_nothing():
    net = Supernet(SupernetConfig(num_blocks=2, width=4), scale=2)
    with torch.no_grad():
        net.body[0].psi_residual.fill_(0.0)  # block 0 writes nothing: its 1x1 and Mult work is wasted
    before = net.mult_adds().item()
    clean_gates(net)
    arch = extract_architecture(net)
    assert arch.blocks[0].is_empty() and arch.blocks[0].pointwise == [] and not arch.blocks[0].mult_channels()
    # block 1 was already the first block that runs (its 1x1 on the extended head's ring) and stays it
    assert net.mult_adds().item() == before - LR_PIXELS_X2 * (1 * 4 * 4 + 9 * 4 * 4)


@pytest.mark.parametrize("activations_searched", [True, False])
def test_cleaning_closes_blocks_with_fewer_mult_channels_than_the_minimum(activations_searched):
    """min_mult_channels 4: a block keeping 3 Mult channels is closed with all its Mult-Adds, one keeping 4
    stays as it is; at the paper's 1 neither is touched."""
    cfg = SupernetConfig(num_blocks=2, width=8, search_activations=activations_searched)
    for minimum, closed in [(1, False), (4, True)]:
        net = Supernet(cfg.model_copy(update={"min_mult_channels": minimum}), scale=2)
        with torch.no_grad():
            net.body[0].psi_mult[3:] = 0.0  # channels 0, 1, 2 (every branch)
            net.body[1].psi_mult[4:] = 0.0  # channels 0 .. 3
        kept = net.mult_adds().item()
        clean_gates(net)
        arch = extract_architecture(net)
        assert arch.blocks[0].is_empty() == closed and arch.blocks[1].mult_channels() == [0, 1, 2, 3]
        # 1x1, Mult 8 -> 3, residual 3 -> 8; the 1x1's ring (block 0 ran first) moves to block 1's 1x1 of equal size
        block_cost = LR_PIXELS_X2 * (1 * 8 * 8 + 9 * 8 * 3 + 9 * 3 * 8)
        assert net.mult_adds().item() == kept - (block_cost if closed else 0)


def test_cleaning_closes_each_activation_part_with_fewer_channels_than_the_minimum():
    """min_mult_channels 4 applies to each activation part, one conv each in the deploy form: block 0 keeps 5
    (P)ReLU channels and 3 tanh-only ones, so its tanh part closes and frees exactly those 3 channels; block 1
    keeps 3 + 3 (6 Mult channels, enough for the whole map) and closes; at the paper's 1 nothing is touched."""
    cfg = SupernetConfig(num_blocks=2, width=8)  # activations relu, prelu, tanh: gate columns 0, 1, 2
    for minimum in (1, 4):
        net = Supernet(cfg.model_copy(update={"min_mult_channels": minimum}), scale=2)
        with torch.no_grad():
            for block in net.blocks():
                block.psi_mult.fill_(0.0)
            net.body[0].psi_mult[:5, 1] = 1.0  # prelu on 0 .. 4
            net.body[0].psi_mult[5:, 2] = 1.0  # tanh only on 5 .. 7
            net.body[1].psi_mult[:3, 0] = 1.0  # relu on 0 .. 2
            net.body[1].psi_mult[3:6, 2] = 1.0  # tanh on 3 .. 5
        kept = net.mult_adds().item()
        clean_gates(net)
        arch = extract_architecture(net)
        if minimum == 1:
            assert net.mult_adds().item() == kept and arch.blocks[0].mult["tanh"] == [5, 6, 7]
            continue
        assert arch.blocks[0].mult == {"relu": [], "prelu": [0, 1, 2, 3, 4], "tanh": []}
        assert arch.blocks[1].is_empty()
        tanh_part = LR_PIXELS_X2 * (9 * 8 * 3 + 9 * 3 * 8)  # block 0's Mult rows and residual columns of 5 .. 7
        block_1 = LR_PIXELS_X2 * (1 * 8 * 8 + 9 * 8 * 6 + 9 * 6 * 8)  # 1x1, Mult 8 -> 6, residual 6 -> 8
        assert net.mult_adds().item() == kept - tanh_part - block_1


def test_architecture_rejects_inconsistent_channel_lists():
    block = {"pointwise": [0], "mult": {"relu": [1, 0]}, "residual": [2]}
    with pytest.raises(ValidationError, match=r"blocks\[0\].mult.relu must be sorted, distinct"):
        FGNASArchitecture(width=4, activations=["relu"], head=[0], blocks=[block], after_body=[])
    half_dead = {"pointwise": [], "mult": {"relu": [1]}, "residual": [2]}
    with pytest.raises(ValidationError, match=r"keeps some but not all"):
        FGNASArchitecture(width=4, activations=["relu"], head=[0], blocks=[half_dead], after_body=[])
    wide = {"pointwise": None, "mult": {"relu": [0, 9]}, "residual": [3]}  # Mult channels up to mult_width
    FGNASArchitecture(width=4, mult_width=10, activations=["relu"], head=[0], blocks=[wide], after_body=[])
    with pytest.raises(ValidationError, match=r"blocks\[0\].mult.relu must be .* in \[0, 4\)"):
        FGNASArchitecture(width=4, activations=["relu"], head=[0], blocks=[wide], after_body=[])
    with pytest.raises(ValidationError, match=r"blocks\[0\].residual must be .* in \[0, 4\)"):
        trunk_too_wide = {"pointwise": None, "mult": {"relu": [0]}, "residual": [5]}
        FGNASArchitecture(
            width=4, mult_width=10, activations=["relu"], head=[0], blocks=[trunk_too_wide], after_body=[]
        )


def test_objective_is_eq_2_with_fixed_lambda_and_adapts_lambda_to_a_target():
    net = Supernet(SupernetConfig(num_blocks=2, width=8), scale=2)
    loss = torch.tensor(0.25)
    full = net.mult_adds().item()
    fixed = SearchObjective(FixedLambda(value=1e-9), lambda m: m.mult_adds(), full, 100)
    assert fixed(net, loss, 0).item() == pytest.approx(0.25 + 1e-9 * full)
    assert SearchObjective(NoBudget(), lambda m: m.mult_adds(), full, 100)(net, loss, 0) is loss

    budget = MultAddsBudget(target_g=full / 2e9, lambda_init=0.1, lambda_rate=0.1, ramp_fraction=0.0)
    target = SearchObjective(budget, lambda m: m.mult_adds(), full, 100)
    total = target(net, loss, 0)  # uses lambda_init, then steps log lambda by rate * (R / target - 1) = +0.1
    assert total.item() == pytest.approx(0.25 + 0.1 * 2.0)
    assert target.current_lambda() == pytest.approx(0.1 * math.exp(0.1))
    with torch.no_grad():
        for psi in net.gate_parameters():
            psi.fill_(0.0)  # everything closed: far under budget, so lambda falls
    target(net, loss, 1)
    assert target.current_lambda() < 0.1 * math.exp(0.1)
    assert "log_lambda" in target.state_dict()
    ramped = SearchObjective(budget.model_copy(update={"ramp_fraction": 0.5}), lambda m: m.mult_adds(), full, 100)
    assert ramped.target_at(0) == full and ramped.target_at(25) == pytest.approx(0.75 * full)
    assert ramped.target_at(50) == ramped.target_at(99) == pytest.approx(full / 2)


@pytest.mark.parametrize(
    ("penalty", "open_all"), [("linear", True), ("linear", False), ("hinge", True), ("hinge", False)]
)
def test_the_hinge_penalty_pushes_only_while_the_cost_is_over_the_target(penalty, open_all):
    """linear: lambda * R / target pushes every gate down at any cost; hinge: lambda * max(R / target - 1, 0)
    is lambda * (2 - 1) at twice the target and 0, with no gradient, under it. Lambda adapts the same way."""
    net = Supernet(SupernetConfig(num_blocks=2, width=8), scale=2)
    full = net.mult_adds().item()
    if not open_all:
        _randomise_gates(net, seed=0, open_fraction=0.2)  # under the target
    cost = net.mult_adds().item()
    budget = MultAddsBudget(target_g=full / 2e9, lambda_init=0.1, lambda_rate=0.1, ramp_fraction=0.0, penalty=penalty)
    objective = SearchObjective(budget, lambda m: m.mult_adds(), full, 100)
    total = objective(net, torch.tensor(0.25), 0)
    over = cost / (full / 2) - 1
    expected = 0.1 * (cost / (full / 2) if penalty == "linear" else max(over, 0.0))
    assert total.item() == pytest.approx(0.25 + expected)
    assert objective.current_lambda() == pytest.approx(0.1 * math.exp(0.1 * over))
    total.backward()
    pushed = sum(float(p.grad.abs().sum()) for p in net.gate_parameters() if p.grad is not None)
    assert (pushed > 0) == (penalty == "linear" or open_all)


def _penalty_gradients(net: Supernet, cost_balance: str) -> list[torch.Tensor]:
    full = net.mult_adds().item()
    budget = MultAddsBudget(target_g=full / 2e9, lambda_init=0.1, ramp_fraction=0.0, cost_balance=cost_balance)
    net.zero_grad()
    total = SearchObjective(budget, lambda m: m.mult_adds(), full, 100)(net, torch.tensor(0.25), 0)
    total.backward()
    return [p.grad.clone() for p in net.gate_parameters()]


def test_the_per_map_cost_balance_prices_every_map_alike_and_keeps_the_cost():
    """per_map: each psi tensor's penalty gradient is scaled by kappa / (its mean magnitude), so every map's
    mean magnitude is kappa (the mean over all gates) and the order of the gates inside a map is kept;
    eq3 leaves a Mult branch gate and a 1x1 gate at their own, different, prices. The value is the same."""
    net = Supernet(SupernetConfig(num_blocks=2, width=8, count_gradient="shared"), scale=2)
    _randomise_gates(net, seed=3, open_fraction=0.8)
    eq3, per_map = _penalty_gradients(net, "eq3"), _penalty_gradients(net, "per_map")
    means = [float(g.abs()[g != 0].mean()) for g in eq3]
    assert max(means) / min(means) > 2  # Eq. 3 prices the maps differently
    kappa = float(torch.cat([g.abs()[g != 0] for g in eq3]).mean())
    for plain, balanced, mean in zip(eq3, per_map, means, strict=True):
        torch.testing.assert_close(balanced, plain * (kappa / mean))
        assert float(balanced.abs()[balanced != 0].mean()) == pytest.approx(kappa, rel=1e-5)
    values = []
    for balance in ("eq3", "per_map"):
        budget = MultAddsBudget(target_g=1.0, lambda_init=0.1, ramp_fraction=0.0, cost_balance=balance)
        values.append(SearchObjective(budget, lambda m: m.mult_adds(), 2e9, 100)(net, torch.tensor(0.25), 0).item())
    assert values[0] == values[1]


@pytest.mark.parametrize("target_g", [3.5, 7.0, 12.0])
def test_projection_lands_within_five_percent_and_keeps_the_learned_order(target_g):
    net = Supernet(SupernetConfig(num_blocks=4, width=32, bicubic_skip=True), scale=2)
    _randomise_gates(net, seed=2, open_fraction=0.8)
    order = torch.cat([p.detach().flatten() for p in net.gate_parameters()]).argsort()
    final = project_to_budget(net, lambda m: m.mult_adds(), target_g * 1e9, 0.05)
    assert abs(final / (target_g * 1e9) - 1) <= 0.05
    assert net.mult_adds().item() == final
    shifted = torch.cat([p.detach().flatten() for p in net.gate_parameters()])
    assert torch.equal(shifted.argsort(), order)  # one common shift (cleaning only closes gates)
    assert count_complexity(extract_subnet(net), 2).mult_adds == round(final)


def test_projection_holds_a_thin_block_open_instead_of_jumping_past_the_band():
    """A block whose residual writes one channel, that channel the weakest gate of all: a common shift
    drops it first and closes the whole block, a step far wider than the band. Holding the block open
    while other channels go lands within one channel of the target."""
    net = Supernet(SupernetConfig(num_blocks=4, width=32), scale=2)
    _randomise_gates(net, seed=4, open_fraction=1.1)  # every other gate in (0.6, 1.6)
    thin = net.blocks()[1]
    with torch.no_grad():
        thin.psi_residual.fill_(0.0)[0] = 0.55
    full = net.mult_adds().item()
    without = copy.deepcopy(net)
    with torch.no_grad():
        without.blocks()[1].psi_residual[0] = 0.0
        clean_gates(without)
    closed = without.mult_adds().item()
    target = (full + closed) / 2
    assert closed / target - 1 < -0.05 and full / target - 1 > 0.05  # neither common-shift step is in the band
    final = project_to_budget(net, lambda m: m.mult_adds(), target, 0.05)
    assert abs(final / target - 1) <= 0.01
    assert thin.psi_residual[0] > 0.5 and net.mult_adds().item() == final


def test_projection_with_a_mult_minimum_lands_in_band_and_keeps_every_mult_map_at_it():
    """With min_mult_channels 8 a common shift closes a block as soon as an activation part falls under 8, a
    step wider than the band (the Mult gates are the weakest here, so they go first). The held pass keeps open
    blocks at 8 channels of one part and prunes the rest instead: within 5 % (holding one Mult gate: 11 % over)."""
    net = Supernet(SupernetConfig(num_blocks=4, width=32, min_mult_channels=8), scale=2)
    _randomise_gates(net, seed=4, open_fraction=1.1)  # every gate in (0.6, 1.6) ...
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for block in net.blocks():  # ... but the Mult gates, in (0.5, 0.6)
            block.psi_mult.copy_(0.5 + 0.1 * torch.rand(block.psi_mult.shape, generator=generator))
    target = net.mult_adds().item() / 4
    final = project_to_budget(net, lambda m: m.mult_adds(), target, 0.05)
    assert abs(final / target - 1) <= 0.05
    arch = extract_architecture(net)
    for block in (block for block in arch.blocks if not block.is_empty()):
        linear, tanh = set(block.mult["relu"]) | set(block.mult["prelu"]), block.mult["tanh"]
        assert all(len(part) >= 8 for part in (linear, tanh) if part)  # each part conv at least 8 wide
    assert count_complexity(extract_subnet(net), 2).mult_adds == round(final)


def test_bicubic_skip_cost_is_counted_once():
    with_skip = Supernet(SupernetConfig(num_blocks=1, width=4, bicubic_skip=True), scale=2)
    without = Supernet(SupernetConfig(num_blocks=1, width=4), scale=2)
    assert with_skip.mult_adds().item() - without.mult_adds().item() == bicubic_mult_adds(2, (720, 1280)) > 0


def test_search_resumes_exactly_with_its_lambda(tmp_path):
    cfg = tiny_config(iterations=12, checkpoint_every=4, val_every=4)
    train_pairs, val_pairs = tiny_data()
    budget = MultAddsBudget(target_g=0.05, lambda_rate=0.5, ramp_fraction=0.25)

    def search(out_dir, on_iteration=None):
        torch.manual_seed(0)
        net = Supernet(SupernetConfig(num_blocks=2, width=8), scale=2)
        objective = SearchObjective(budget, lambda m: m.mult_adds(), net.mult_adds().item(), cfg.iterations)
        sampler = PatchSampler(train_pairs, 2, cfg.lr_patch, cfg.seed)
        result = train(net, sampler, val_pairs, cfg, 2, out_dir, objective=objective, on_iteration=on_iteration)
        return net, objective, result

    reference, ref_objective, ref_result = search(tmp_path / "reference")
    assert ref_objective.current_lambda() != pytest.approx(budget.lambda_init)  # the controller moved
    assert {"search/cost", "search/lambda", "alive/block0.mult"} <= set(ref_result.history[-1])
    with pytest.raises(Interrupted):
        search(tmp_path / "run", interrupt_at(6))
    resumed, objective, _ = search(tmp_path / "run")
    assert objective.current_lambda() == ref_objective.current_lambda()
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_gate_lr_scale_sets_the_gates_rate_apart_from_the_weights(tmp_path):
    """Factor 0 keeps every psi at gate_init while the weights train; factor 1 lets the budget move them."""
    cfg = tiny_config(iterations=4, scheduler=CosineSchedule(eta_min=0.0))
    train_pairs, val_pairs = tiny_data()
    budget = MultAddsBudget(target_g=0.05)
    moved = {}
    for factor in (0.0, 1.0):
        torch.manual_seed(0)
        net = Supernet(SupernetConfig(num_blocks=2, width=8, gate_lr_scale=factor), scale=2)
        objective = SearchObjective(budget, lambda m: m.mult_adds(), net.mult_adds().item(), cfg.iterations)
        sampler = PatchSampler(train_pairs, 2, cfg.lr_patch, cfg.seed)
        weight = net.conv_first.weight.detach().clone()
        train(net, sampler, val_pairs, cfg, 2, tmp_path / str(factor), objective=objective, lr_scale=net.lr_scale)
        assert not torch.equal(net.conv_first.weight, weight)
        moved[factor] = [bool((psi != 1.0).any()) for psi in net.gate_parameters()]
    assert not any(moved[0.0]) and all(moved[1.0])
    assert net.lr_scale("body.0.psi_mult") == 1.0 and net.lr_scale("body.0.conv_mult.weight") == 1.0


def test_latency_budget_search_lands_in_the_band_with_a_table():
    """The latency path of the search with a synthetic table ms = K^2 cin cout / 1e6 (bilinear is exact
    on a product), so the estimate is Eq. 3's per-pixel sum / 1e6 and a projected architecture lands within 5%."""
    from edgesr.search.latency_grid import LatencyTable, LayerGrid, channel_grid

    cfg = SupernetConfig(num_blocks=4, width=32)
    grid = channel_grid(cfg.width, 8)

    def layer(kernel: int, ins: tuple[int, ...], outs: tuple[int, ...]) -> LayerGrid:
        return LayerGrid(kernel, ins, outs, tuple(tuple(kernel**2 * i * o / 1e6 for o in outs) for i in ins))

    table = LatencyTable(
        {
            "head": layer(3, (3,), grid),
            "conv1x1": layer(1, grid, grid),
            "conv3x3": layer(3, grid, grid),
            "last": layer(3, grid, (12,)),
        }
    )
    net = Supernet(cfg, scale=2)
    _randomise_gates(net, seed=3, open_fraction=0.7)
    estimate = table.estimate_ms(net.counted_convs())
    per_pixel = sum(float(c.kernel**2 * c.alive_in * c.alive_out) for c in net.counted_convs())
    assert estimate.item() == pytest.approx(per_pixel / 1e6, rel=1e-6)
    estimate.backward()  # the straight-through gradients flow through the table
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.gate_parameters())
    target_ms = 0.3 * estimate.item()
    final = project_to_budget(net, lambda m: table.estimate_ms(m.counted_convs()), target_ms, 0.05)
    assert abs(final / target_ms - 1) <= 0.05


@pytest.mark.parametrize(
    ("device", "rounds", "within"),
    [
        (lambda ms: 1.2 * ms * (1 + ms / 1000), 3, True),  # slower, nearly proportional
        (lambda ms: 0.8 * ms * (1 + ms / 1000), 3, True),  # faster
        (lambda ms: 2.0 * ms - 30.0, 3, True),  # not proportional: the ratio step alone oscillates around it
        (lambda ms: 1.2 * ms * (1 + ms / 1000), 0, False),  # the estimate trusted: the miss is reported
    ],
)
@pytest.mark.parametrize("deadline", [True, False])
def test_a_latency_budget_is_judged_on_the_measured_subnet_and_reprojected(device, rounds, within, deadline):
    """The device runs the found subnet at ``device(estimate)`` ms: finish_search re-projects the searched
    gates to a corrected goal until the measured latency is in the band, at most ``verify_rounds`` times,
    keeps an in-band candidate, else one under the band, and reports its measurement; with 0 rounds the miss
    is reported. A deadline's band is 38 .. 40 ms, centred on 39; otherwise 38 .. 42."""
    from edgesr.search.budget import finish_search
    from edgesr.search.settings import LatencyBudget

    net = Supernet(SupernetConfig(num_blocks=4, width=32), scale=2)
    _randomise_gates(net, seed=3, open_fraction=0.9)
    full = float(net.mult_adds())

    def estimate(m: Supernet) -> torch.Tensor:
        return m.mult_adds() / full * 100.0  # ms

    measurements: list[float] = []

    def measure(m: Supernet) -> float:
        measurements.append(device(float(estimate(m))))
        return measurements[-1]

    budget = LatencyBudget(target_ms=40.0, tolerance=0.05, verify_rounds=rounds, deadline=deadline)
    centre, high = (39.0, 40.0) if deadline else (40.0, 42.0)

    def in_band(ms: float) -> bool:
        return 38.0 - 1e-9 <= ms <= high + 1e-9

    finished = finish_search(net, budget, estimate, measure)
    final, ok, measured = finished.cost, finished.within_budget, finished.measured_ms
    tried = len(finished.rounds)
    assert tried <= rounds + 1 and tried < len(measurements) <= 2 * tried  # each candidate timed twice at most
    assert {r["measured_ms"] for r in finished.rounds} == set(measurements)  # every round is reported
    assert all(r["fastest_ms"] == r["measured_ms"] for r in finished.rounds)  # this device has no noise
    measurements = [r["measured_ms"] for r in finished.rounds]
    assert finished.rounds[0]["goal"] == pytest.approx(centre) and all(r["goal"] > 0 for r in finished.rounds)
    inside = [ms for ms in measurements if in_band(ms)]
    under = [ms for ms in measurements if ms < 38.0]
    # kept: the nearest the centre in the band, else under it (a deadline met), else of all
    assert measured == min(inside or under or measurements, key=lambda ms: abs(ms - centre))
    assert ok is within and ok == in_band(measured)
    assert final == pytest.approx(float(estimate(net))) and device(final) == pytest.approx(measured)
    if rounds:
        assert len(measurements) >= 2 and not in_band(measurements[0])  # the estimate alone missed


def test_a_candidate_timed_slow_once_is_timed_again_and_counts_at_its_fastest():
    """The first measurement reads 1.3x slow (a machine still busy after the training): the rounds move
    away from a candidate that was in the band, and timing every candidate again brings it back."""
    from edgesr.search.budget import finish_search
    from edgesr.search.settings import LatencyBudget

    net = Supernet(SupernetConfig(num_blocks=4, width=32), scale=2)
    _randomise_gates(net, seed=3, open_fraction=0.9)
    full = float(net.mult_adds())

    def estimate(m: Supernet) -> torch.Tensor:
        return m.mult_adds() / full * 100.0  # ms, exact: the device runs at the estimate

    calls: list[float] = []

    def measure(m: Supernet) -> float:
        calls.append(float(estimate(m)) * (1.3 if not calls else 1.0))
        return calls[-1]

    finished = finish_search(net, LatencyBudget(target_ms=40.0, tolerance=0.05, verify_rounds=3), estimate, measure)
    first = finished.rounds[0]
    assert first["measured_ms"] > 1.25 * first["estimate"] and first["fastest_ms"] == pytest.approx(first["estimate"])
    assert finished.within_budget and finished.measured_ms == pytest.approx(finished.cost)
    assert 38.0 <= finished.measured_ms <= 40.0 and len(finished.rounds) > 1  # a deadline's band


def test_a_deadline_band_lies_under_its_target():
    from edgesr.search.budget import target_band
    from edgesr.search.settings import LatencyBudget

    centre, half = target_band(LatencyBudget(target_ms=33.0, tolerance=0.05))
    assert (centre * (1 - half), centre, centre * (1 + half)) == pytest.approx((31.35, 32.175, 33.0))
    assert target_band(LatencyBudget(target_ms=33.0, tolerance=0.05, deadline=False)) == (33.0, 0.05)


def test_next_goal_is_a_secant_through_the_two_nearest_measurements():
    """One pair: the ratio step goal * target / measured. Two or more: the line through the two pairs measured
    nearest the target, or the nearest on each side once they bracket it, solved for the target (exact when the
    device is linear in the goal, offset included); a line that does not rise falls back to the ratio step from
    the nearest."""
    from edgesr.search.budget import next_goal

    assert next_goal([(33.0, 44.0)], 33.0) == pytest.approx(33.0 * 33.0 / 44.0)
    device = lambda goal: 1.5 * goal + 8.0  # noqa: E731
    tried = [(33.0, device(33.0)), (20.0, device(20.0)), (5.0, device(5.0))]
    assert device(next_goal(tried, 33.0)) == pytest.approx(33.0)
    assert next_goal([(30.0, 40.0), (20.0, 45.0)], 33.0) == pytest.approx(30.0 * 33.0 / 40.0)
    # an RT search's rounds: the two nearest (30.54 and 28.51 ms) both lie under the band's centre and gave 30.30
    # again; bracketed by 30.54 and 35.91 ms the goal goes between their goals
    rounds = [(32.175, 38.64), (26.793, 28.51), (28.741, 30.54), (30.302, 35.91)]
    assert next_goal(rounds, 32.175) == pytest.approx(28.741 + (32.175 - 30.54) * (30.302 - 28.741) / (35.91 - 30.54))


def test_deploy_form_has_one_conv_per_activation_without_masks_and_shuffles_once():
    """Every (P)ReLU part of Eq. 4's branches is a row of one conv with one PReLU, every tanh part a row of
    another with tanh (a channel with both is a row of each), each conv feeding a single activation; the
    bicubic skip one polyphase conv before a single pixel shuffle; same function."""
    torch.manual_seed(3)
    net = Supernet(SupernetConfig(num_blocks=3, width=16, bicubic_skip=True), 2)
    _randomise_gates(net, seed=5, open_fraction=0.5)
    subnet = extract_subnet(net)
    kept = [
        channel_branches(block, subnet.arch.blocks[i].mult_channels())
        for block, i in zip(subnet.blocks(), subnet.block_indices, strict=True)
    ]
    seen = set().union(*kept)
    assert len(seen) == 7, f"the test needs every non-empty branch set, saw {sorted(map(sorted, seen))}"
    parts = [activation_parts(branches) for branches in kept]
    with torch.no_grad():
        for block in subnet.blocks():
            block.prelu.weight.uniform_(-0.5, 0.8)
        deployed = deploy_form(subnet)
        x = torch.rand(1, 3, 17, 12)
        torch.testing.assert_close(deployed(x), subnet(x), atol=1e-5, rtol=0)
    kinds = [type(m).__name__ for m in deployed.modules()]
    assert kinds.count("PixelShuffle") == 1 and kinds.count("BicubicPhases") == 1
    assert not [name for name, _ in deployed.named_buffers() if "mask" in name]
    for block, branches, block_parts in zip(deployed.body, kept, parts, strict=True):
        linear = [p for p, k in enumerate(branches) if k & {"relu", "prelu"}]
        tanh = [p for p, k in enumerate(branches) if "tanh" in k]
        assert block_parts == {name: rows for name, rows in (("linear", linear), ("tanh", tanh)) if rows}
        assert [conv.out_channels for conv in block.part_convs] == [len(rows) for rows in block_parts.values()]
        expected = {"linear": ("PReLU", "ReLU"), "tanh": ("Tanh",)}
        for name, activation in zip(block_parts, block.part_activations, strict=True):
            assert type(activation).__name__ in expected[name]


@pytest.mark.parametrize("pointwise", [True, False])
def test_deploy_form_appends_narrow_residual_writes_and_adds_wide_ones(pointwise):
    """A block writing at most a fifth of the channel space appends its channels to the trunk (later
    readers repeat the columns of those channels), a wider one adds a whole-space write; same function."""
    torch.manual_seed(4)
    net = Supernet(SupernetConfig(num_blocks=4, width=16, bicubic_skip=True, pointwise=pointwise), 2)
    _randomise_gates(net, seed=4, open_fraction=0.5)
    with torch.no_grad():  # every block open; blocks 0 and 2 write 2 and 3 trunk channels, 1 and 3 most of them
        for block in net.body:
            for psi in (block.psi_pointwise, block.psi_mult):
                if psi is not None:
                    psi.fill_(1.0)
        for block, kept in zip(net.body, (range(2), range(16), range(13, 16), range(1, 16)), strict=True):
            block.psi_residual.fill_(0.0)
            block.psi_residual[list(kept)] = 1.0
    subnet = extract_subnet(net)
    deployed = deploy_form(subnet)
    width = deployed.conv_first.out_channels
    writes = [len(subnet.arch.blocks[i].residual) for i in subnet.block_indices]
    assert (
        [block.concatenate for block in deployed.body]
        == [5 * w <= width for w in writes]
        == [
            True,
            False,
            True,
            False,
        ]
    )
    # the trunk: the space, + 2 appended, + 3 appended; an added write covers all of it
    trunks = [width, width + writes[0], width + writes[0], width + writes[0] + writes[2]]
    assert [b.conv_residual.out_channels for b in deployed.body] == [writes[0], trunks[1], writes[2], trunks[3]]
    first = [b.part_convs[0] if b.conv_pointwise is None else b.conv_pointwise for b in deployed.body]
    assert [conv.in_channels for conv in first] == [3, *trunks[1:]]  # the first block reads the RGB input
    assert deployed.conv_after_body is not None and deployed.conv_after_body.in_channels == trunks[3]
    x = torch.rand(1, 3, 15, 11)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), subnet(x), atol=1e-5, rtol=0)


def test_deploy_form_composes_the_1x1_into_the_mult_convs_exactly_where_that_costs_fewer_mult_adds():
    """After the first block: a wide 1x1 in front of a narrow Mult map becomes one 3x3 conv per part (exact at the
    border: the subnet pads the 1x1's output with its bias); a narrow 1x1 in front of a wide Mult map (Fig. 4)
    stays."""
    torch.manual_seed(5)
    net = Supernet(SupernetConfig(num_blocks=3, width=16, bicubic_skip=True), 2)
    with torch.no_grad():
        for psi in net.gate_parameters():
            psi.fill_(1.0)
        net.body[1].psi_mult.fill_(0.0)  # block 1: 16 1x1 channels -> 4 Mult channels (tanh 2, relu + prelu 3)
        net.body[1].psi_mult[:2, 2] = 1.0
        net.body[1].psi_mult[1:4, :2] = 1.0
        net.body[2].psi_pointwise[4:] = 0.0  # block 2: 4 1x1 channels -> 16 Mult channels, every branch
        for block in net.body:  # biases large enough that a zero border ring would show
            block.conv_pointwise.bias.normal_(0.0, 1.0)
    subnet = extract_subnet(net).eval()
    deployed = deploy_form(subnet)
    _, merged, kept = deployed.body
    assert merged.conv_pointwise is None and [c.in_channels for c in merged.part_convs] == [16, 16]
    assert [c.out_channels for c in merged.part_convs] == [3, 2]  # the linear part, then tanh
    assert not merges_pointwise(16, 4, 32) and merges_pointwise(16, 16, 5)
    assert kept.conv_pointwise is not None and kept.conv_pointwise.out_channels == 4
    assert kept.conv_pointwise.padding == (1, 1) and kept.part_convs[0].padding == (0, 0)
    x = torch.rand(1, 3, 9, 13)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), subnet(x), atol=1e-5, rtol=0)
        # the bias ring matters: zero-padding the 1x1's output instead moves the border pixels
        block = subnet.blocks()[1]
        zero_padded = nn.Conv2d(block.conv_mult.in_channels, block.conv_mult.out_channels, 3, padding=1)
        zero_padded.load_state_dict(block.conv_mult.state_dict())
        pointwise = nn.Conv2d(block.conv_pointwise.in_channels, block.conv_pointwise.out_channels, 1)
        pointwise.load_state_dict(block.conv_pointwise.state_dict())
        h = torch.rand(1, block.conv_pointwise.in_channels, 9, 13)
        ring = (block.conv_mult(block.conv_pointwise(h)) - zero_padded(pointwise(h))).abs()
        assert ring[..., 1:-1, 1:-1].max() < 1e-5 < ring[..., 0, :].max()


@pytest.mark.parametrize(
    ("pointwise", "pointwise_channels", "composed", "first"),
    [(True, 16, "mult", 0), (True, 2, "pointwise", 0), (False, 0, "mult", 0), (True, 16, "mult", 1)],
)
def test_deploy_form_composes_the_first_block_with_the_head_onto_the_rgb_input(
    pointwise, pointwise_channels, composed, first
):
    """The head is linear and the first block that runs reads it run one pixel beyond the image, so head -> 1x1
    -> Mult is one 5x5 conv per part on the RGB input (``75 m`` Mult-Adds per pixel), exact at the border; a 1x1
    of ``p`` channels in front of a wide Mult map is cheaper as a 3x3 conv 3 -> p on the input
    (``27 p + 9 p m``). With block 0 closed, block 1 is that block, in the supernet as in the subnet."""
    torch.manual_seed(6)
    net = Supernet(SupernetConfig(num_blocks=3, width=16, bicubic_skip=True, pointwise=pointwise), 2)
    with torch.no_grad():
        for psi in net.gate_parameters():
            psi.fill_(1.0)
        net.psi_head[12:] = 0.0  # the head keeps 12 of 16 channels
        for block in net.blocks()[:first]:  # closed blocks before the first that runs
            for psi in (block.psi_pointwise, block.psi_mult, block.psi_residual):
                if psi is not None:
                    psi.fill_(0.0)
        if pointwise:
            net.body[first].psi_pointwise[pointwise_channels:] = 0.0
        for param in (net.conv_first.bias, net.body[first].conv_mult.bias):  # biases that would show at the border
            param.normal_(0.0, 1.0)
    assert net.first_running_block() == first
    subnet = extract_subnet(net).eval()
    deployed = deploy_form(subnet)
    assert subnet.block_indices[0] == first and [b.reads_image for b in deployed.body] == [True] + [False] * (2 - first)
    assert merges_head(None, 1) and merges_head(16, 32) and not merges_head(2, 32)
    reader = deployed.body[0]
    if composed == "mult":  # 16 Mult rows: 75 * 32 < 9 * 16 * 32 (no 1x1) or 27 * 16 + 9 * 16 * 32
        assert reader.conv_pointwise is None
        assert [(c.in_channels, c.kernel_size, c.padding) for c in reader.part_convs] == [(3, (5, 5), (2, 2))] * 2
    else:
        assert reader.conv_pointwise is not None
        assert (reader.conv_pointwise.in_channels, reader.conv_pointwise.out_channels) == (3, 2)
        assert reader.conv_pointwise.kernel_size == (3, 3) and reader.conv_pointwise.padding == (2, 2)
        assert [(c.in_channels, c.padding) for c in reader.part_convs] == [(2, (0, 0))] * 2
    x = torch.rand(1, 3, 9, 13)
    with torch.no_grad():
        torch.testing.assert_close(subnet(x), net.eval()(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(deployed(x), subnet(x), atol=1e-5, rtol=0)
        # the extended head matters: its ring is what the head conv gives there, not the zeros of padding
        head, extended = extended_head(subnet.conv_first, x)
        assert torch.equal(head, subnet.conv_first(x)) and extended.shape[-2:] == (11, 15)
        assert extended[..., 0, :].abs().max() > 0.1


def test_bicubic_phases_are_the_bicubic_skip_before_its_pixel_shuffle():
    x = torch.rand(2, 3, 9, 14)
    for scale in (2, 3, 4):
        phases = BicubicPhases(3, scale)(x)
        assert phases.shape == (2, 3 * scale * scale, 9, 14)
        torch.testing.assert_close(torch.nn.PixelShuffle(scale)(phases), Bicubic(3, scale)(x), atol=1e-6, rtol=0)
