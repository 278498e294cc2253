"""The FGNAS supernet (paper 001, Table 1) with its searchable block (Sec. 3.1, Fig. 1d).

    conv_first   3x3 conv 3 -> C                      gated (head, M = 1)
    body         n x searchable block                 (below)
    conv_after_body  3x3 conv C -> C                  gated; closes the global skip from conv_first
    conv_last    3x3 conv C -> 3 s^2, PixelShuffle(s)

Searchable block, input x (C channels)::

    h = g_pw * conv1x1(x)                                   (1x1 "squeeze", gated, M = 1)
    m = conv3x3(h)                                          (the "Mult" feature map, C_m channels; see below
                                                             for padding)
    a = (g_relu * relu(m) + g_prelu * prelu(m) + g_tanh * tanh(m)) / 3
    x = x + g_res * conv3x3(a)                              (residual output channels gated)

The 1x1's output is padded with its bias and the Mult conv reads it unpadded, so the pair composes
exactly into one 3x3 conv (:func:`edgesr.models.fgnas.pointwise_and_mult`). The first block that runs (the
first whose residual keeps a channel: the trunk is the head alone until then) reads the head computed one pixel
beyond the image unpadded (:func:`edgesr.models.fgnas.extended_head`), so the linear chain head -> 1x1 -> Mult
composes exactly into one conv on the RGB input, as in the extracted subnet. All three activations are 0
at 0 and the sum is scaled by 1/3 (Sec. 3.1). ``pointwise: false`` drops
the 1x1 conv (EDSR's residual block, Table 5); ``activations: [relu]`` keeps a single activation.
The Mult map has ``C_m = mult_width`` channels, C in the paper; wider, the block is WDSR's wide-activation
block (Yu et al., "Wide Activation for Efficient and Accurate Image Super-Resolution", 2018: more channels
before the activation at the same Mult-Adds), and the gates choose each block's expansion.
What is searched (Table 4) is chosen by ``search_channels`` (head, 1x1, residual and after-body
gates) and ``search_activations`` (one gate per activation and Mult channel). With channel search but
no activation search the Mult map gets one gate per channel, shared by the three branches ("relocates
the pruning ... to the feature map for the Mult operation", Sec. 4.4). An unsearched gate is a
constant 1 and costs nothing.

Interpretation choices (DESIGN.md): ``conv_after_body``'s output channels are gated too, and the
global skip is counted as a sub-feature map of it, so ``conv_last`` reads the union of the two; an
optional bicubic skip (``bicubic_skip``, off in the paper) adds the bicubic-upscaled input to the
output as SAM_SR does (paper 004), a constant cost in the regularizer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from edgesr.complexity import count_complexity
from edgesr.models.bicubic import Bicubic
from edgesr.models.fgnas import extended_head, mult_map, pointwise_and_mult
from edgesr.search.gates import GATE_THRESHOLD, count_alive, scale_gradient, st_gate
from edgesr.search.settings import SupernetConfig

__all__ = [
    "BlockGates",
    "CountedConv",
    "SearchableBlock",
    "Supernet",
    "SupernetGates",
    "apply_activations",
]


def apply_activations(m: Tensor, names: Sequence[str], prelu: nn.PReLU | None, gates: Tensor | None) -> Tensor:
    """``sum_a g_a * a(m) / len(names)`` over the activation branches (Sec. 3.1's 1/3 scaling).

    ``gates`` is ``(C, len(names))`` or ``None`` (every branch of every channel kept).
    """
    total: Tensor | None = None
    for index, name in enumerate(names):
        if name == "relu":
            branch = torch.relu(m)
        elif name == "tanh":
            branch = torch.tanh(m)
        else:
            assert prelu is not None, "a prelu branch needs its PReLU"
            branch = prelu(m)
        if gates is not None:
            branch = branch * gates[:, index].view(1, -1, 1, 1)
        total = branch if total is None else total + branch
    assert total is not None, "at least one activation"
    return total / len(names)


def _is_gate(name: str) -> bool:
    """Whether the parameter ``name`` (as ``named_parameters`` gives it) is a searched ``psi``."""
    return name.rpartition(".")[2].startswith("psi_")


def _gate_parameter(shape: tuple[int, ...], init: float) -> nn.Parameter:
    return nn.Parameter(torch.full(shape, float(init)))


def _gate(psi: nn.Parameter | None, channels: int, device: torch.device) -> Tensor:
    """Binary gates of ``psi`` (Eq. 1), or constant ones when that map is not searched."""
    return st_gate(psi) if psi is not None else torch.ones(channels, device=device)


def _gate_or_none(psi: nn.Parameter | None) -> Tensor | None:
    return None if psi is None else st_gate(psi)


def _scaled(x: Tensor, gate: Tensor | None) -> Tensor:
    return x if gate is None else x * gate.view(1, -1, 1, 1)


@dataclass
class BlockGates:
    """Binary gates of one block: ``pointwise`` (C,) or None, ``mult`` (C_m, M), ``residual`` (C,)."""

    pointwise: Tensor | None
    mult: Tensor
    residual: Tensor


@dataclass
class SupernetGates:
    """Every gate of the supernet, forward values exactly 0 / 1, backward as Eq. 1."""

    head: Tensor
    blocks: list[BlockGates]
    after_body: Tensor


@dataclass(frozen=True)
class CountedConv:
    """One convolution of Eq. 3: kernel size and its (differentiable) alive input and output channels;
    ``extended``: it runs one pixel beyond the image (:func:`edgesr.models.fgnas.extended_head`)."""

    name: str
    kernel: int
    alive_in: Tensor
    alive_out: Tensor
    extended: bool = False


class SearchableBlock(nn.Module):
    """Sec. 3.1's searchable residual block (Fig. 1d); see the module docstring for the dataflow."""

    def __init__(self, cfg: SupernetConfig) -> None:
        super().__init__()
        width, mult, num_acts = cfg.width, cfg.mult_map_width, len(cfg.activations)
        self.activations = list(cfg.activations)
        self.conv_pointwise, self.conv_mult = pointwise_and_mult(width, width if cfg.pointwise else None, mult)
        self.prelu = nn.PReLU(mult, init=0.25) if "prelu" in cfg.activations else None
        self.conv_residual = nn.Conv2d(mult, width, 3, padding=1)
        channels = cfg.search_channels
        self.psi_pointwise = _gate_parameter((width,), cfg.gate_init) if channels and cfg.pointwise else None
        self.psi_mult: nn.Parameter | None
        if cfg.search_activations:
            self.psi_mult = _gate_parameter((mult, num_acts), cfg.gate_init)
        else:
            self.psi_mult = _gate_parameter((mult, 1), cfg.gate_init) if channels else None
        self.psi_residual = _gate_parameter((width,), cfg.gate_init) if channels else None
        self.search_activations = cfg.search_activations
        self.mult_gate_gradient = float(num_acts) if cfg.mult_gate_gradient == "unscaled" else 1.0

    def gates(self) -> BlockGates:
        device = self.conv_mult.weight.device
        pointwise = None
        if self.conv_pointwise is not None:
            pointwise = _gate(self.psi_pointwise, self.conv_pointwise.out_channels, device)
        mult = (
            st_gate(self.psi_mult)
            if self.psi_mult is not None
            else torch.ones(self.conv_mult.out_channels, 1, device=device)
        )
        return BlockGates(pointwise, mult, _gate(self.psi_residual, self.conv_residual.out_channels, device))

    def forward(self, x: Tensor, extended: Tensor | None = None) -> Tensor:
        """``extended``: ``x`` (the head alone) extended by one pixel, read by the first block that runs
        (:func:`edgesr.models.fgnas.extended_head`)."""
        pointwise_gate = _gate_or_none(self.psi_pointwise)
        m = mult_map(
            self.conv_pointwise,
            self.conv_mult,
            x if extended is None else extended,
            extended is not None,
            lambda p: _scaled(p, pointwise_gate),
        )
        mult_gates = _gate_or_none(self.psi_mult)
        if mult_gates is not None and self.mult_gate_gradient != 1.0:
            mult_gates = scale_gradient(mult_gates, self.mult_gate_gradient)
        if not self.search_activations and mult_gates is not None:  # one gate per Mult channel, before the branches
            m, mult_gates = _scaled(m, mult_gates[:, 0]), None
        a = apply_activations(m, self.activations, self.prelu, mult_gates)
        return x + _scaled(self.conv_residual(a), _gate_or_none(self.psi_residual))


class Supernet(nn.Module):
    """Table 1's supernet: (N, 3, H, W) in [0, 1] -> (N, 3, sH, sW), gated by straight-through gates."""

    def __init__(self, cfg: SupernetConfig, scale: int) -> None:
        super().__init__()
        self.cfg, self.scale, width = cfg, scale, cfg.width
        self.conv_first = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.ModuleList(SearchableBlock(cfg) for _ in range(cfg.num_blocks))
        self.conv_after_body = nn.Conv2d(width, width, 3, padding=1)
        self.conv_last = nn.Conv2d(width, 3 * scale * scale, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(scale)
        self.bicubic = Bicubic(3, scale) if cfg.bicubic_skip else None
        self.psi_head = _gate_parameter((width,), cfg.gate_init) if cfg.search_channels else None
        self.psi_after_body = _gate_parameter((width,), cfg.gate_init) if cfg.search_channels else None

    def forward(self, x: Tensor) -> Tensor:
        head_gate = _gate_or_none(self.psi_head)
        head, extended = (_scaled(h, head_gate) for h in extended_head(self.conv_first, x))
        trunk, first = head, self.first_running_block()
        for index, block in enumerate(self.blocks()):
            trunk = block(trunk, extended if index == first else None)
        after = _scaled(self.conv_after_body(trunk), _gate_or_none(self.psi_after_body))
        out = self.pixel_shuffle(self.conv_last(after + head))
        return out if self.bicubic is None else out + self.bicubic(x)

    def blocks(self) -> list[SearchableBlock]:
        """The blocks of ``body``, typed (iterating a ``ModuleList`` yields plain modules)."""
        return cast(list[SearchableBlock], list(self.body))

    # ---- the architecture as data -------------------------------------------------------------------

    def first_running_block(self, gates: SupernetGates | None = None) -> int | None:
        """The index of the first block whose residual keeps a channel (the trunk is the head alone until it
        writes), which reads the extended head; None when no block does. One host sync; without ``gates`` (the
        forward pass) the gates are read without building their graph. On the meta device
        (:func:`edgesr.complexity.count_complexity`) gates have no values: block 0, as in the whole supernet."""
        if gates is None:  # the forward pass: the blocks' own gates, without the resource term's routing
            with torch.no_grad():
                residuals = [block.gates().residual for block in self.blocks()]
        else:
            residuals = [block.residual for block in gates.blocks]
        if residuals[0].is_meta:
            return 0
        writes = torch.stack([residual.detach().sum() > 0 for residual in residuals]).tolist()
        return writes.index(True) if True in writes else None

    def gate_parameters(self) -> list[nn.Parameter]:
        """Every searched ``psi`` (empty when nothing is searched)."""
        return [p for name, p in self.named_parameters() if _is_gate(name)]

    def lr_scale(self, name: str) -> float:
        """The trainer's factor of the learning rate for the parameter ``name``: ``gate_lr_scale`` for a ``psi``,
        1 for a weight (:func:`edgesr.train.trainer.train`'s ``lr_scale``)."""
        return self.cfg.gate_lr_scale if _is_gate(name) else 1.0

    def gates(self) -> SupernetGates:
        """Every gate, as the resource term reads them; with ``block_pressure: weakest`` the gates of every open
        block but the weakest, and the head's and after-body's while a block is open, are detached, so the term's
        gradient reaches one block's channels and depth at a time (:data:`edgesr.search.settings.BlockPressure`)."""
        device, width = self.conv_first.weight.device, self.cfg.width
        blocks = [block.gates() for block in self.blocks()]
        head, after_body = _gate(self.psi_head, width, device), _gate(self.psi_after_body, width, device)
        if self.cfg.block_pressure == "weakest" and (weakest := self.weakest_open_block()) is not None:
            blocks = [
                g if index == weakest else BlockGates(_detached(g.pointwise), g.mult.detach(), g.residual.detach())
                for index, g in enumerate(blocks)
            ]
            head, after_body = head.detach(), after_body.detach()
        return SupernetGates(head=head, blocks=blocks, after_body=after_body)

    def strongest_residual_gates(self) -> list[float] | None:
        """Each block's largest residual ``psi`` (a block is open while it is above the threshold), or None when the
        residual gates are not searched or have no values (the meta device). One host sync."""
        psis = [block.psi_residual for block in self.blocks()]
        if not psis or any(psi is None or psi.is_meta for psi in psis):
            return None
        return torch.stack([cast(nn.Parameter, psi).detach().max() for psi in psis]).tolist()

    def weakest_open_block(self, strongest: list[float] | None = None) -> int | None:
        """The open block whose strongest residual gate is lowest (ties: the lower index), or None when no block
        is open or the residual gates are not searched; ``strongest``: :meth:`strongest_residual_gates`, when read
        already."""
        strongest = strongest if strongest is not None else self.strongest_residual_gates()
        if strongest is None:
            return None
        open_blocks = [(value, index) for index, value in enumerate(strongest) if value > GATE_THRESHOLD]
        return min(open_blocks)[1] if open_blocks else None

    def counted_convs(self, gates: SupernetGates | None = None) -> list[CountedConv]:
        """Every conv with its alive input / output channel counts (Eq. 4), in forward order.

        A trunk channel (the input of a block's first conv, or of ``conv_after_body``) is alive when
        the head gate or any earlier residual gate keeps it: the skip is a sub-feature map of each
        residual (Sec. 3.2.4), so the count is :func:`count_alive` over all of them, with the supernet's
        ``count_gradient``.
        """
        gates = gates if gates is not None else self.gates()
        mode = self.cfg.count_gradient
        convs = [CountedConv("head", 3, _constant(3, gates.head), gates.head.sum(), extended=True)]
        trunk_maps, first = [gates.head], self.first_running_block(gates)
        for index, block in enumerate(gates.blocks):
            trunk = count_alive(torch.stack(trunk_maps, dim=-1), mode).sum()
            mult_in = trunk
            if block.pointwise is not None:
                convs.append(CountedConv(f"block{index}.pointwise", 1, trunk, block.pointwise.sum(), index == first))
                mult_in = block.pointwise.sum()
            mult_out = count_alive(block.mult, mode).sum()
            convs.append(CountedConv(f"block{index}.mult", 3, mult_in, mult_out))
            convs.append(CountedConv(f"block{index}.residual", 3, mult_out, block.residual.sum()))
            trunk_maps.append(block.residual)
        trunk = count_alive(torch.stack(trunk_maps, dim=-1), mode).sum()
        convs.append(CountedConv("after_body", 3, trunk, gates.after_body.sum()))
        last_in = count_alive(torch.stack([gates.after_body, gates.head], dim=-1), mode).sum()
        convs.append(CountedConv("last", 3, last_in, _constant(3 * self.scale**2, gates.head)))
        return convs

    def mult_adds(self, output_hw: tuple[int, int] = (720, 1280)) -> Tensor:
        """Eq. 3: ``R = sum_l K_l^2 H_l W_l (alive in)(alive out)`` for one ``output_hw`` output.

        Every conv runs at the LR size ``h x w = ceil(H / s) x ceil(W / s)``, as :func:`edgesr.complexity.
        count_complexity` counts it, the head and the 1x1 of the first block that runs at ``(h + 2) x (w + 2)``
        (they run one pixel beyond the image: :func:`edgesr.models.fgnas.extended_head`), plus the constant cost
        of the bicubic skip when there is one. The forward value equals the counted Mult-Adds of the extracted subnet
        exactly.
        """
        lr_h, lr_w = math.ceil(output_hw[0] / self.scale), math.ceil(output_hw[1] / self.scale)
        pixels = {False: lr_h * lr_w, True: (lr_h + 2) * (lr_w + 2)}
        # float64: float32 would round a count of several G Mult-Adds by tens of units.
        total = cast(
            Tensor,
            sum(
                c.kernel**2 * pixels[c.extended] * c.alive_in.double() * c.alive_out.double()
                for c in self.counted_convs()
            ),
        )
        return total + bicubic_mult_adds(self.scale, output_hw) * (self.bicubic is not None)


def _detached(gates: Tensor | None) -> Tensor | None:
    return None if gates is None else gates.detach()


def _constant(value: int, like: Tensor) -> Tensor:
    return torch.tensor(float(value), device=like.device)


@functools.cache
def bicubic_mult_adds(scale: int, output_hw: tuple[int, int]) -> int:
    """Mult-Adds of the exportable bicubic module (its polyphase convs), counted once."""
    return count_complexity(Bicubic(3, scale), scale, output_hw).mult_adds
