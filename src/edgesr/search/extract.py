"""From a searched supernet to its subnet: clean the gates, write the architecture, copy the weights.

Extraction (DESIGN.md, "FGNAS"): the hard gates of the supernet (Eq. 1 forward values) decide what is
kept. Before that, :func:`clean_gates` removes dead ends that Eq. 3 would still pay for, e.g. a block
whose residual gates are all closed but whose 1x1 and Mult channels are open (their work reaches
nothing). After cleaning, two invariants hold exactly (tested): the subnet built from
:func:`extract_architecture` with :func:`transfer_weights` computes the hard-gated supernet's output,
and its counted Mult-Adds equal :meth:`Supernet.mult_adds`'s forward value.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgesr.architectures import BlockArchitecture, FGNASArchitecture
from edgesr.models.fgnas import FGNAS
from edgesr.search.gates import GATE_THRESHOLD
from edgesr.search.supernet import SearchableBlock, Supernet

__all__ = [
    "DEAD_PSI",
    "clean_gates",
    "extract_architecture",
    "extract_subnet",
    "linear_columns",
    "strongest_gates_of_open_blocks",
    "transfer_weights",
]

DEAD_PSI = GATE_THRESHOLD - 0.25
"""The value :func:`clean_gates` gives a gate it closes (below Eq. 1's threshold, within reach of it)."""


def _alive(psi: nn.Parameter | None, width: int) -> torch.Tensor:
    """(width, M) boolean keep decisions; an unsearched map keeps everything."""
    if psi is None:
        return torch.ones(width, 1, dtype=torch.bool)
    alive = psi.detach().cpu() > GATE_THRESHOLD
    return alive if alive.dim() == 2 else alive[:, None]


def _channels(psi: nn.Parameter | None, width: int) -> list[int]:
    return torch.nonzero(_alive(psi, width).any(dim=1)).flatten().tolist()


@torch.no_grad()
def _revive_strongest(psi: nn.Parameter) -> None:
    """Open the single gate with the largest psi (just above the threshold if it was closed)."""
    flat = psi.view(-1)
    index = int(torch.argmax(flat))
    flat[index] = max(float(flat[index]), GATE_THRESHOLD + 0.25)


def _block_parts(block: SearchableBlock) -> list[nn.Parameter | None]:
    parts = [block.psi_mult, block.psi_residual]
    return parts + ([block.psi_pointwise] if block.conv_pointwise is not None else [])


def linear_columns(activations: Sequence[str]) -> list[int]:
    """The Mult gate columns of the (P)ReLU part: relu and prelu, one PReLU conv in the deploy form."""
    return [column for column, name in enumerate(activations) if name in ("relu", "prelu")]


def _activation_parts(block: SearchableBlock, activations: Sequence[str]) -> list[list[int]]:
    """Columns of the block's Mult gates that make each activation part of the deploy form, the (P)ReLU part
    then tanh (:func:`edgesr.deploy.fgnas_form.activation_parts`): one conv each. One shared column (the
    activations not searched) is one part."""
    assert block.psi_mult is not None
    if block.psi_mult.dim() == 1 or block.psi_mult.shape[1] == 1:
        return [[0]]
    tanh = [column for column, name in enumerate(activations) if name == "tanh"]
    return [part for part in (linear_columns(activations), tanh) if part]


def _close_narrow_parts(block: SearchableBlock, minimum: int, activations: Sequence[str]) -> None:
    """Close every activation part of the block's Mult map that keeps some but fewer than ``minimum`` channels."""
    psi = block.psi_mult
    assert psi is not None
    alive = _alive(psi, block.conv_mult.out_channels)
    gates = psi if psi.dim() == 2 else psi[:, None]
    for part in _activation_parts(block, activations):
        if 0 < int(alive[:, part].any(dim=1).sum()) < minimum:
            gates[:, part] = gates[:, part].clamp(max=DEAD_PSI)


@torch.no_grad()
def clean_gates(supernet: Supernet) -> None:
    """Close or reopen gates (in place) so that every open channel contributes to the output.

    - The head keeps at least one channel (otherwise the input is ignored).
    - In a block whose 1x1, Mult and residual maps are all searched, an activation part of the Mult map (the
      channels of one conv of the deploy form: the (P)ReLU part or the tanh part) that keeps fewer than
      ``min_mult_channels`` channels is closed (:class:`edgesr.search.settings.SupernetConfig`).
    - A block is alive in all of its 1x1, Mult and residual maps or in none: if one is empty and all
      three are searched, the block is closed; if some are not searched (constant gates cannot be
      closed), the strongest gate of each empty searched map is reopened instead.
    """
    cfg = supernet.cfg
    width, minimum = cfg.width, cfg.min_mult_channels
    if supernet.psi_head is not None and not _channels(supernet.psi_head, width):
        _revive_strongest(supernet.psi_head)
    for block in supernet.blocks():
        parts = _block_parts(block)
        searched = [psi for psi in parts if psi is not None]
        closable = len(searched) == len(parts)
        if closable and minimum > 1:
            _close_narrow_parts(block, minimum, cfg.activations)
        # An unsearched map keeps every channel, so only searched ones can be empty.
        empty = [psi for psi in searched if not _channels(psi, width)]
        if closable and empty:
            for psi in searched:
                psi.clamp_(max=DEAD_PSI)
        else:
            for psi in empty:
                _revive_strongest(psi)


def _strongest_channels(psi: torch.Tensor, count: int) -> torch.Tensor:
    """A mask of ``psi``'s shape, True at the largest gate of each of its ``count`` strongest channels (ties go
    to the lower channel and branch, so ``count`` 1 marks ``argmax(psi)``)."""
    strength, branch = (psi[:, None] if psi.dim() == 1 else psi).max(dim=1)
    channels = torch.sort(strength, descending=True, stable=True).indices[:count]
    mask = torch.zeros(len(strength), psi.numel() // len(strength), dtype=torch.bool, device=psi.device)
    mask[channels, branch[channels]] = True
    return mask.view(psi.shape)


def _strongest_part_channels(block: SearchableBlock, count: int, activations: Sequence[str]) -> torch.Tensor:
    """A mask of ``psi_mult``'s shape, True at the strongest gate of the ``count`` strongest channels of the one
    activation part whose ``count``-th strongest channel is the strongest (the part a common shift of every psi
    keeps at ``count`` channels longest)."""
    assert block.psi_mult is not None
    psi = block.psi_mult.detach()
    gates = psi if psi.dim() == 2 else psi[:, None]
    parts = _activation_parts(block, activations)
    rank = min(count, gates.shape[0]) - 1
    best = max(parts, key=lambda part: float(torch.sort(gates[:, part].amax(dim=1), descending=True).values[rank]))
    mask = torch.zeros_like(gates, dtype=torch.bool)
    mask[:, best] = _strongest_channels(gates[:, best], count).view(gates.shape[0], len(best))
    return mask.view(psi.shape)


def strongest_gates_of_open_blocks(supernet: Supernet) -> list[torch.Tensor]:
    """Per searched ``psi`` (in :meth:`Supernet.gate_parameters` order), a mask that is True at the
    largest gate of each searched map of every block open now, and in the Mult map at the strongest gate of
    the ``min_mult_channels`` strongest channels of one activation part: holding those open keeps every
    such block open, whatever else is pruned."""
    masks = {id(psi): torch.zeros_like(psi, dtype=torch.bool) for psi in supernet.gate_parameters()}
    cfg = supernet.cfg
    for block in supernet.blocks():
        searched = [psi for psi in _block_parts(block) if psi is not None]
        if searched and all(_channels(psi, cfg.width) for psi in searched):
            for psi in searched:
                if psi is block.psi_mult:
                    masks[id(psi)] = _strongest_part_channels(block, cfg.min_mult_channels, cfg.activations)
                else:
                    masks[id(psi)] = _strongest_channels(psi.detach(), 1)
    return [masks[id(psi)] for psi in supernet.gate_parameters()]


def extract_architecture(supernet: Supernet) -> FGNASArchitecture:
    """The architecture the supernet's hard gates describe (call :func:`clean_gates` first)."""
    cfg, width = supernet.cfg, supernet.cfg.width
    blocks = []
    for block in supernet.blocks():
        mult_alive = _alive(block.psi_mult, cfg.mult_map_width)
        if mult_alive.shape[1] == 1:  # one gate shared by every branch (or none searched)
            mult_alive = mult_alive.expand(cfg.mult_map_width, len(cfg.activations))
        mult = {a: torch.nonzero(mult_alive[:, i]).flatten().tolist() for i, a in enumerate(cfg.activations)}
        pointwise = _channels(block.psi_pointwise, width) if block.conv_pointwise is not None else None
        residual = _channels(block.psi_residual, width)
        if not residual:  # a closed block: store it empty everywhere
            mult, pointwise = {a: [] for a in cfg.activations}, (None if pointwise is None else [])
        blocks.append(BlockArchitecture(pointwise=pointwise, mult=mult, residual=residual))
    return FGNASArchitecture(
        width=width,
        mult_width=cfg.mult_width,
        activations=list(cfg.activations),
        head=_channels(supernet.psi_head, width),
        blocks=blocks,
        after_body=_channels(supernet.psi_after_body, width),
    )


def _copy_conv(target: nn.Conv2d, source: nn.Conv2d, outputs: list[int], inputs: list[int] | None) -> None:
    weight = source.weight[outputs]
    target.weight.copy_(weight if inputs is None else weight[:, inputs])
    assert target.bias is not None and source.bias is not None, "FGNAS convs have biases"
    target.bias.copy_(source.bias[outputs])


@torch.no_grad()
def transfer_weights(supernet: Supernet, subnet: FGNAS) -> FGNAS:
    """Copy the kept slices of the supernet's weights into ``subnet`` (built from the same architecture)."""
    arch = subnet.arch
    trunk = arch.trunk_channels()
    _copy_conv(subnet.conv_first, supernet.conv_first, arch.head, None)
    for index, sub_block in zip(subnet.block_indices, subnet.blocks(), strict=True):
        block, source = arch.blocks[index], supernet.blocks()[index]
        reads = arch.trunk_channels(index)
        if block.pointwise is not None:
            assert sub_block.conv_pointwise is not None and source.conv_pointwise is not None
            _copy_conv(sub_block.conv_pointwise, source.conv_pointwise, block.pointwise, reads)
            reads = block.pointwise
        mult = block.mult_channels()
        _copy_conv(sub_block.conv_mult, source.conv_mult, mult, reads)
        if sub_block.prelu is not None:
            assert source.prelu is not None
            sub_block.prelu.weight.copy_(source.prelu.weight[mult])
        _copy_conv(sub_block.conv_residual, source.conv_residual, block.residual, mult)
    if subnet.conv_after_body is not None:
        _copy_conv(subnet.conv_after_body, supernet.conv_after_body, arch.after_body, trunk)
    last_in = sorted(set(arch.head) | set(arch.after_body))
    _copy_conv(subnet.conv_last, supernet.conv_last, list(range(supernet.conv_last.out_channels)), last_in)
    return subnet


def extract_subnet(supernet: Supernet) -> FGNAS:
    """Clean the gates, then build the subnet of the architecture with the supernet's weights."""
    clean_gates(supernet)
    arch = extract_architecture(supernet)
    subnet = FGNAS(arch, upscale=supernet.scale, bicubic_skip=supernet.bicubic is not None)
    return transfer_weights(supernet, subnet.to(supernet.conv_first.weight.device))
