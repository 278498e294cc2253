"""FGNAS subnet: the physically pruned network that a search of the FGNAS supernet finds (paper 001).

Kim et al., "Fine-grained neural architecture search for image super-resolution", JVCIR 2022. The
searched architecture (Fig. 4b) is data, :class:`FGNASArchitecture`: per block the kept 1x1
channels, the kept channels of each activation branch of the Mult map and the trunk channels its
residual writes; the head and after-body channels. Channel numbers are those of the supernet (0 ..
width - 1), so weights can be copied from it (:mod:`edgesr.search.extract`).

The subnet keeps the trunk as one tensor holding the union of every trunk channel, in supernet order.
Each conv reads exactly the channels that are alive where it sits and writes only its kept ones, so
its Mult-Adds are Eq. 3's ``K^2 H W (alive in)(alive out)`` and the total equals the supernet's
regularizer (tested). Reading a subset is an ``index_select`` and writing one is a zero-padded
``index_select`` (a Gather either way in ONNX), which cost no Mult-Adds.

Runtimes run those Pad + Gather nodes and the masked activation branches with slow kernels, so
deployment uses :func:`edgesr.deploy.fgnas_form.deploy_form`: the same function as plain convolutions,
activations and adds over one channel space, at a few more Mult-Adds.

Tensor contract: (N, 3, H, W) float RGB in [0, 1] -> (N, 3, sH, sW) for s in {2, 3, 4} (Sec. 4.1:
other scales change only the last conv to 3 s^2 outputs and retrain from scratch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesr.architectures import BlockArchitecture, FGNASArchitecture, FGNASConfig
from edgesr.models.bicubic import Bicubic
from edgesr.models.registry import MODEL_REGISTRY

__all__ = [
    "FGNAS",
    "BiasPadded1x1",
    "FGNASBlock",
    "build_fgnas",
    "channel_positions",
    "extended_head",
    "mult_map",
    "pointwise_and_mult",
]


def channel_positions(channels: list[int], within: list[int]) -> Tensor:
    """Positions of ``channels`` inside the sorted list ``within``."""
    where = {c: i for i, c in enumerate(within)}
    return torch.tensor([where[c] for c in channels], dtype=torch.long)


class BiasPadded1x1(nn.Conv2d):
    """A 1x1 conv of padding 1, whose output ring holds its bias: computed as the unpadded conv with that ring
    added, so the ring costs no Mult-Adds (the count stays Eq. 3's ``H W (in)(out)``)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        assert self.bias is not None
        return F.pad(F.conv2d(x, self.weight), (1, 1, 1, 1)) + self.bias.view(1, -1, 1, 1)


def extended_head(conv_first: nn.Conv2d, x: Tensor) -> tuple[Tensor, Tensor]:
    """The head and the head computed one pixel beyond the image, ``(N, C, H + 2, W + 2)``: ``conv_first`` on
    the zero-padded input, so the ring holds what the head conv gives there (its Mult-Adds count the ring).

    The head is linear (no activation after ``conv_first``) and the first block that runs reads it: its convs
    read the extended head unpadded (:func:`mult_map`), so they compose with the head into convs on the RGB
    input that are exact at the border too (:func:`edgesr.deploy.fgnas_form.deploy_form`).
    """
    extended = conv_first(F.pad(x, (1, 1, 1, 1)))
    return extended[..., 1:-1, 1:-1], extended


def pointwise_and_mult(reads: int, pointwise: int | None, mult: int) -> tuple[nn.Conv2d | None, nn.Conv2d]:
    """A block's 1x1 conv (``reads -> pointwise``, None without one) and its 3x3 Mult conv (``-> mult``).

    With a 1x1 conv there is no activation between the two, so they compose into one 3x3 conv. For that to
    hold at the image border too, the 1x1's output is padded with its bias (:class:`BiasPadded1x1`) and the
    Mult conv reads it unpadded, where zero padding would show the Mult conv zeros on the border ring (ECBSR's
    SeqConv3x3 pads a 1x1 output with its bias for the same reason: Zhang et al., "Edge-oriented Convolution
    Block for Real-time Super Resolution on Mobile Devices", ACM MM 2021). The deploy form merges the pair
    when one 3x3 conv costs fewer Mult-Adds (:func:`edgesr.deploy.fgnas_form.merges_pointwise`). Without a
    1x1 conv the Mult conv zero-pads its input. The first block that runs reads the extended head instead,
    with both convs unpadded (:func:`mult_map`).
    """
    if pointwise is None:
        return None, nn.Conv2d(reads, mult, 3, padding=1)
    return BiasPadded1x1(reads, pointwise), nn.Conv2d(pointwise, mult, 3)


def mult_map(
    pointwise: nn.Conv2d | None,
    mult: nn.Conv2d,
    h: Tensor,
    extended: bool,
    between: Callable[[Tensor], Tensor] = lambda p: p,
) -> Tensor:
    """A block's Mult map of its input ``h``: the 1x1 (then ``between``, the supernet's 1x1 gates) and the Mult
    conv, or the Mult conv alone. The first conv reads ``h`` as built, zero- or bias-padded
    (:func:`pointwise_and_mult`), on the trunk, and unpadded on the head extended by one pixel (``extended``: the
    first block that runs, :func:`extended_head`), so head -> 1x1 -> Mult is exactly one conv on the RGB input."""
    first = pointwise if pointwise is not None else mult
    h = F.conv2d(h, first.weight, first.bias) if extended else first(h)
    return h if pointwise is None else mult(between(h))


def _placement(channels: list[int], within: list[int]) -> Tensor:
    """For each channel of ``within``: its position in ``channels``, or ``len(channels)`` (the zero pad)."""
    where = {c: i for i, c in enumerate(channels)}
    return torch.tensor([where.get(c, len(channels)) for c in within], dtype=torch.long)


def _place(x: Tensor, placement: Tensor | None) -> Tensor:
    """Scatter x's channels into a wider map (zeros elsewhere) as a Gather over x plus one zero channel.

    ``None`` means x already is the wider map (no Gather: runtimes run Pad + Gather with slow kernels).
    """
    return x if placement is None else F.pad(x, (0, 0, 0, 0, 0, 1)).index_select(1, placement)


def _register_placement(module: nn.Module, name: str, channels: list[int], within: list[int]) -> None:
    """A non-persistent buffer with :func:`_placement`, or None when ``channels`` already is ``within``."""
    module.register_buffer(name, None if channels == within else _placement(channels, within), persistent=False)


class FGNASBlock(nn.Module):
    """One kept block: gather alive trunk channels, 1x1, 3x3 Mult, masked activations, 3x3, scatter-add."""

    read: Tensor
    write: Tensor | None

    def __init__(self, block: BlockArchitecture, arch: FGNASArchitecture, index: int) -> None:
        super().__init__()
        trunk, before = arch.trunk_channels(), arch.trunk_channels(index)
        mult = block.mult_channels()
        self.activations = list(arch.activations)
        self.register_buffer("read", channel_positions(before, trunk), persistent=False)
        self.reads_everything = before == trunk
        pointwise = None if block.pointwise is None else len(block.pointwise)
        self.conv_pointwise, self.conv_mult = pointwise_and_mult(len(before), pointwise, len(mult))
        kept = {a: block.mult.get(a, []) for a in self.activations}
        self.prelu = nn.PReLU(len(mult), init=0.25) if kept.get("prelu") else None
        # A branch kept on every Mult channel needs no mask; a branch kept nowhere is skipped.
        masks = {a: torch.tensor([float(c in set(v)) for c in mult]) for a, v in kept.items() if v and v != mult}
        self.branches = [a for a in self.activations if kept[a]]
        for name, mask in masks.items():
            self.register_buffer(f"mask_{name}", mask.view(1, -1, 1, 1), persistent=False)
        self.masked = set(masks)
        self.conv_residual = nn.Conv2d(len(mult), len(block.residual), 3, padding=1)
        _register_placement(self, "write", block.residual, trunk)

    def forward(self, trunk: Tensor, extended: Tensor | None = None) -> Tensor:
        """``extended``: the trunk (the head alone) extended by one pixel, which the first block reads
        (:func:`extended_head`)."""
        source = trunk if extended is None else extended
        h = source if self.reads_everything else source.index_select(1, self.read)
        m = mult_map(self.conv_pointwise, self.conv_mult, h, extended is not None)
        total: Tensor | None = None
        for name in self.branches:
            if name == "relu":
                branch = torch.relu(m)
            elif name == "tanh":
                branch = torch.tanh(m)
            else:
                assert self.prelu is not None, "a prelu branch needs its PReLU"
                branch = self.prelu(m)
            if name in self.masked:
                branch = branch * getattr(self, f"mask_{name}")
            total = branch if total is None else total + branch
        assert total is not None, "a kept block has at least one branch"
        return trunk + _place(self.conv_residual(total / len(self.activations)), self.write)


class FGNAS(nn.Module):
    """The searched network of :class:`FGNASArchitecture` at ``upscale`` (Table 1 with pruned convs)."""

    head_to_trunk: Tensor | None
    after_to_last: Tensor | None
    head_to_last: Tensor | None

    def __init__(self, arch: FGNASArchitecture, upscale: int = 2, bicubic_skip: bool = False) -> None:
        super().__init__()
        self.arch, self.upscale, self.num_in_ch = arch, upscale, 3
        trunk = arch.trunk_channels()
        self.conv_first = nn.Conv2d(3, len(arch.head), 3, padding=1)
        _register_placement(self, "head_to_trunk", arch.head, trunk)
        self.body = nn.ModuleList(FGNASBlock(b, arch, i) for i, b in enumerate(arch.blocks) if not b.is_empty())
        self.block_indices = [i for i, b in enumerate(arch.blocks) if not b.is_empty()]
        last_in = arch.skip_channels()
        self.conv_after_body = nn.Conv2d(len(trunk), len(arch.after_body), 3, padding=1) if arch.after_body else None
        _register_placement(self, "after_to_last", arch.after_body, last_in)
        _register_placement(self, "head_to_last", arch.head, last_in)
        self.conv_last = nn.Conv2d(len(last_in), 3 * upscale * upscale, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(upscale)
        self.bicubic = Bicubic(3, upscale) if bicubic_skip else None

    def blocks(self) -> list[FGNASBlock]:
        """The blocks of ``body``, typed (iterating a ``ModuleList`` yields plain modules)."""
        return cast(list[FGNASBlock], list(self.body))

    def forward(self, x: Tensor) -> Tensor:
        head, extended = extended_head(self.conv_first, x)
        trunk = _place(head, self.head_to_trunk)
        for position, block in enumerate(self.blocks()):
            trunk = block(trunk, _place(extended, self.head_to_trunk) if position == 0 else None)
        skip = _place(head, self.head_to_last)
        if self.conv_after_body is not None:
            skip = skip + _place(self.conv_after_body(trunk), self.after_to_last)
        out = self.pixel_shuffle(self.conv_last(skip))
        return out if self.bicubic is None else out + self.bicubic(x)


@MODEL_REGISTRY.register("fgnas")
def build_fgnas(cfg: FGNASConfig, scale: int) -> FGNAS:
    """The searched subnet of ``cfg.architecture`` with a last conv of 3 s^2 outputs (Sec. 4.1)."""
    return FGNAS(cfg.architecture, upscale=scale, bicubic_skip=cfg.bicubic_skip)
