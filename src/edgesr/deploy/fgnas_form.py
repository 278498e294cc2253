"""The deploy form of an FGNAS subnet: plain convolutions whose int8 latency follows their Mult-Adds.

The trained subnet (:class:`edgesr.models.fgnas.FGNAS`) is written for the search: its trunk lives in
gathered channel subsets and every block computes Eq. 4's activation branches on the whole Mult map,
masks them per channel, sums them and scales by ``1 / len(activations)``. Runtimes run the gathers with
slow kernels and the branches as float element-wise work on every channel; both cost time that no
Mult-Adds count shows (issue 13). :func:`deploy_form` rewrites the same function, up to float
rounding (tested), as:

- **one channel space** (trunk ∪ after-body): every read and write of a channel subset is folded into
  the conv that does it as zero weight columns or rows, so the graph has no Gather / Pad (a few more
  Mult-Adds on the zero weights);
- **narrow residual writes concatenated**: a block whose residual writes at most a fifth of the space
  (:func:`concatenates`) appends its few channels to the trunk (``cat(trunk, r)``) instead of writing the
  whole space, mostly zeros, and adding it; every later reader of the trunk repeats the weight column of
  a channel for each copy of it (``W [x; r] = W x + W r``, the same function). The default S subnet writes
  4 of 32 channels in its one block and the RT subnet 1 of 25 in each of four: side by side in OpenVINO
  int8 (640x360, 2 threads) the concatenating form runs S in 19.97 against 21.26 ms and RT in 28.36
  against 32.37 ms (issue 13). A wide write grows every later reader: on a 4x32 net whose four blocks write
  R channels each, appending against adding ran 35.2 / 37.5 ms at R = 4, 38.0 / 37.6 at R = 8 and
  40.9 / 37.9 at R = 12, so writes above a fifth (the cpu-long subnets write 32-38 of 40) are added;
- **the 1x1 conv composed into the Mult convs** when one 3x3 conv ``reads -> mult`` per part costs no
  more Mult-Adds than the pair (:func:`merges_pointwise`; the subnet pads the 1x1's output with its bias,
  so this is exact at the border too: :func:`edgesr.models.fgnas.pointwise_and_mult`). The default S
  subnet's block reads 32 channels, keeps 32 1x1 channels and 8 Mult channels: 2304 against 3328
  Mult-Adds per pixel; side by side in OpenVINO int8 (640x360, 2 threads) the retrained S ran 19.72 ms
  against the previous S's 20.76, and the cpu-long S architecture 196 against 218 ms with the pair kept
  (issue 13). Narrow 1x1 convs in front of wide Mult maps (Fig. 4's shape) stay two convs;
- **the first block composed with the head onto the RGB input**: the head has no activation, so head -> 1x1 ->
  Mult is linear, and the first kept block (the trunk is the head alone until a block writes) reads the head run
  one pixel beyond the image
  (:func:`edgesr.models.fgnas.extended_head`), so the chain is exactly one 5x5 conv ``3 -> m`` per part on
  the zero-padded input, ``75 m`` Mult-Adds per pixel against ``9 r m`` (:func:`merges_head`; a narrow 1x1
  in front of a wide Mult map is instead composed with the head into one 3x3 conv ``3 -> p``). The head
  itself still runs for the trunk. The default S's tanh conv went from ``32 -> 8`` 3x3 to ``3 -> 8`` 5x5 (531 to 138 M
  Mult-Adds): on an Intel AMX machine 1.84 against 2.21 ms profiled in OpenVINO int8, the whole S unchanged side by
  side (17.1 ms), as convs reading three channels run far below the wide ones there (issue 13). The convs that then
  read the input (head, these parts, the skip) stay separate: one 5x5 conv ``3 -> 52`` sliced three ways ran S's shapes
  2.24x slower in OpenVINO int8 (43.1 against 19.2 ms; a VariadicSplit and an unfused tanh:
  ``benchmarks/rgb_reader_fusion.py``);
- **one conv per activation** per block: the Mult channels with a (P)ReLU part are the rows of one conv
  (``conv_mult``'s rows) followed by one PReLU with per-channel slopes, the channels with tanh the rows of
  another followed by tanh, with no mask; a channel with both is a row of each. ``relu`` alone is a PReLU
  of slope 0 and ``relu + prelu`` on one channel is ``2 PReLU(a / 2)`` (for ``m > 0`` both give ``m``;
  below, ``0 + a m``), the factor 2 folded into the next conv as is Eq. 4's ``1 / len(activations)``.
  ``conv_residual`` reads both parts concatenated (its columns permuted and scaled to match). Each conv
  feeds one activation, which the runtimes fuse into the conv: a conv whose output fed both a PReLU and
  tanh left both as separate float nodes, 2x slower in OpenVINO int8 than computing those rows twice
  (issue 13, 106 vs 50 ms on a 4x32 net with 8 such channels of 24 per block);
- **one pixel shuffle**: the fixed bicubic skip runs as one polyphase conv (:class:`BicubicPhases`)
  whose ``3 s^2`` phases are added to ``conv_last``'s output before the single DepthToSpace, instead of
  a second DepthToSpace and an add at the output resolution.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesr.models.bicubic import BicubicPhases
from edgesr.models.fgnas import FGNAS, FGNASBlock, channel_positions

__all__ = [
    "DeployedFGNAS",
    "DeployedFGNASBlock",
    "activation_parts",
    "channel_branches",
    "concatenates",
    "deploy_form",
    "merges_head",
    "merges_pointwise",
]


def _pair(values: tuple[int, ...]) -> tuple[int, int]:
    """A 2-D conv's kernel size or padding as the pair ``nn.Conv2d`` takes (its attributes are typed loosely)."""
    first, second = values
    return first, second


def _conv_like(conv: nn.Conv2d, in_channels: int, out_channels: int) -> nn.Conv2d:
    """A new plain conv with ``conv``'s kernel size, padding and device and ``in_channels -> out_channels`` (a
    :class:`edgesr.models.fgnas.BiasPadded1x1` becomes the 1x1 conv of padding 1 it computes)."""
    padding = conv.padding if isinstance(conv.padding, str) else _pair(conv.padding)
    return nn.Conv2d(in_channels, out_channels, _pair(conv.kernel_size), padding=padding).to(conv.weight.device)


def _sliced_conv(
    conv: nn.Conv2d,
    width: int | None = None,
    rows: list[int] | None = None,
    columns: list[int] | None = None,
    keep_rows: list[int] | None = None,
) -> nn.Conv2d:
    """A new conv built from ``conv``: its output rows ``keep_rows`` only (all when None), placed at
    positions ``rows`` of ``width`` outputs and/or its inputs placed at positions ``columns`` of
    ``width`` inputs, zero weights (and bias) elsewhere.

    On a ``width``-channel map that is zero outside ``columns`` (or whose other channels should be
    ignored), the new conv gives ``conv``'s kept outputs at ``rows`` and exact zeros elsewhere.
    """
    kept = torch.arange(conv.out_channels) if keep_rows is None else torch.tensor(keep_rows, dtype=torch.long)
    out_rows = torch.arange(len(kept)) if rows is None else torch.tensor(rows)
    in_columns = torch.arange(conv.in_channels) if columns is None else torch.tensor(columns)
    assert width is not None or (rows is None and columns is None), "placing rows or columns needs a width"
    new = _conv_like(
        conv,
        conv.in_channels if columns is None else int(width or 0),
        len(kept) if rows is None else int(width or 0),
    )
    assert new.bias is not None and conv.bias is not None, "FGNAS convs have biases"
    with torch.no_grad():
        new.weight.zero_()
        new.weight[out_rows[:, None], in_columns[None, :]] = conv.weight[kept]
        new.bias.zero_()
        new.bias[out_rows] = conv.bias[kept]
    return new


def _read_layout(conv: nn.Conv2d, layout: list[int]) -> nn.Conv2d:
    """``conv``, which reads the channel space, as a conv reading a trunk whose channel ``j`` holds (a part of)
    space channel ``layout[j]``: column ``j`` is ``conv``'s column ``layout[j]``, so a channel held twice is
    summed (``W [x; r] = W (x + r)``). The identity layout returns ``conv`` itself."""
    if layout == list(range(conv.in_channels)):
        return conv
    new = _conv_like(conv, len(layout), conv.out_channels)
    assert new.bias is not None and conv.bias is not None, "FGNAS convs have biases"
    with torch.no_grad():
        new.weight.copy_(conv.weight[:, layout])
        new.bias.copy_(conv.bias)
    return new


def concatenates(writes: int, width: int) -> bool:
    """Does a block whose residual writes ``writes`` channels of a ``width``-channel space append them to the
    trunk (``cat``) rather than add a whole-space write (module docstring)? At most a fifth of the space."""
    return 5 * writes <= width


def merges_pointwise(reads: int, pointwise: int, mult: int) -> bool:
    """Does a block's 1x1 conv (``reads -> pointwise``) compose into its Mult convs (``pointwise -> mult`` rows
    over all parts), one 3x3 conv ``reads -> mult`` per part (module docstring)? When that costs no more
    Mult-Adds per pixel: ``9 reads mult <= reads pointwise + 9 pointwise mult``."""
    return 9 * reads * mult <= reads * pointwise + 9 * pointwise * mult


def merges_head(pointwise: int | None, mult: int) -> bool:
    """Does the first block's chain head -> 1x1 -> Mult run as one 5x5 conv per part on the RGB input (``75 mult``
    Mult-Adds per pixel) rather than as a 3x3 conv ``3 -> pointwise`` on it followed by the Mult convs
    (``27 pointwise + 9 pointwise mult``)? Always without a 1x1 (module docstring)."""
    return pointwise is None or 75 * mult <= 27 * pointwise + 9 * pointwise * mult


def _composed(first: nn.Conv2d, second: nn.Conv2d) -> nn.Conv2d:
    """``second`` after ``first`` as one conv on ``first``'s input, padded as ``first`` pads it.

    ``second`` reads ``first``'s output unpadded, so every value it reads holds ``first``'s bias and the chain is
    one conv of kernel ``k1 + k2 - 1``: the full convolution of the kernels summed over the middle channels
    (``conv_transpose2d`` of ``second``'s weight by ``first``'s), bias ``b2 + sum W2 b1``. Exact at the border
    too: a bias-padded 1x1 (:class:`edgesr.models.fgnas.BiasPadded1x1`, a 1x1 of padding 1) or the head run one
    pixel beyond the image (:func:`edgesr.models.fgnas.extended_head`, padding 2) is what ``second`` reads there.
    """
    assert second.padding == (0, 0), "the second conv reads the first's output unpadded"
    kernel = first.kernel_size[0] + second.kernel_size[0] - 1
    assert not isinstance(first.padding, str), "a numeric padding"
    new = nn.Conv2d(first.in_channels, second.out_channels, kernel, padding=_pair(first.padding))
    assert new.bias is not None and second.bias is not None and first.bias is not None, "FGNAS convs have biases"
    with torch.no_grad():
        new.weight.copy_(F.conv_transpose2d(second.weight, first.weight))
        new.bias.copy_(second.bias + torch.einsum("omhw,m->o", second.weight, first.bias))
    return new.to(second.weight.device)


def _with_padding(conv: nn.Conv2d, padding: int) -> nn.Conv2d:
    """A copy of ``conv`` padded by ``padding``: 0 for a block's first conv reading the extended head, 2 for the
    head run one pixel beyond the image (:func:`edgesr.models.fgnas.extended_head`)."""
    new = copy.deepcopy(conv)
    new.padding = (padding, padding)
    return new


def _from_image(
    head: nn.Conv2d, pointwise: nn.Conv2d | None, parts: list[nn.Conv2d]
) -> tuple[nn.Conv2d | None, list[nn.Conv2d]]:
    """The first block's convs composed with the head (``head``: padding 2, one pixel beyond the image) so that
    they read the RGB input: the Mult parts as 5x5 convs, or the 1x1 as a 3x3 conv (:func:`merges_head`).
    The block reads the extended head unpadded (:func:`edgesr.models.fgnas.mult_map`)."""
    if pointwise is None:
        return None, [_composed(head, _with_padding(part, 0)) for part in parts]
    pointwise = _with_padding(pointwise, 0)
    if merges_head(pointwise.out_channels, sum(part.out_channels for part in parts)):
        return None, [_composed(head, _composed(pointwise, part)) for part in parts]
    return _composed(head, pointwise), parts


def channel_branches(block: FGNASBlock, mult: list[int]) -> list[frozenset[str]]:
    """The set of activation branches kept on each Mult channel (Eq. 4); ``mult``: the block's kept Mult channels."""
    kept: dict[str, set[int]] = {name: set(range(len(mult))) for name in block.branches}
    for name in block.masked:
        mask = getattr(block, f"mask_{name}").flatten()
        kept[name] = {i for i in range(len(mult)) if mask[i] > 0}
    return [frozenset(name for name in block.branches if position in kept[name]) for position in range(len(mult))]


def activation_parts(branches: list[frozenset[str]]) -> dict[str, list[int]]:
    """The Mult positions of each activation part, ``linear`` (a relu / prelu part) then ``tanh``; empty parts left out.

    relu alone is a PReLU of slope 0 and relu + prelu one PReLU (module docstring), so every channel with a
    (P)ReLU part is a row of the one linear-part conv; a channel with both parts is a row of both convs.
    """
    parts = {
        "linear": [position for position, kept in enumerate(branches) if kept & {"relu", "prelu"}],
        "tanh": [position for position, kept in enumerate(branches) if "tanh" in kept],
    }
    return {part: positions for part, positions in parts.items() if positions}


def _linear_part(block: FGNASBlock, kept: list[frozenset[str]], positions: list[int]) -> tuple[nn.Module, Tensor]:
    """The linear part's (P)ReLU and each channel's factor: relu -> slope 0, prelu -> a, relu + prelu -> a / 2 (x 2)."""
    both = torch.tensor([kept[p] >= {"relu", "prelu"} for p in positions])
    factors = 1.0 + both.float()
    if not any("prelu" in kept[p] for p in positions):
        return nn.ReLU(), factors
    assert block.prelu is not None, "a prelu branch needs its PReLU"
    slopes = block.prelu.weight.detach().cpu()[positions]
    slopes = torch.where(torch.tensor([("prelu" in kept[p]) for p in positions]), slopes / factors, 0.0)
    prelu = nn.PReLU(len(positions))
    with torch.no_grad():
        prelu.weight.copy_(slopes)
    return prelu, factors


class DeployedFGNASBlock(nn.Module):
    """trunk + conv_residual(concat over parts p of act_p(conv_p(h))), h = conv_pointwise(s) or s, s the trunk
    or, for the first block, the RGB input (``reads_image``); or, for a narrow write,
    ``cat(trunk, conv_residual(...))`` (:func:`concatenates`)."""

    def __init__(
        self,
        conv_pointwise: nn.Conv2d | None,
        part_convs: list[nn.Conv2d],
        part_activations: list[nn.Module],
        conv_residual: nn.Conv2d,
        concatenate: bool = False,
        reads_image: bool = False,
    ) -> None:
        super().__init__()
        self.conv_pointwise = conv_pointwise
        self.part_convs = nn.ModuleList(part_convs)
        self.part_activations = nn.ModuleList(part_activations)
        self.conv_residual = conv_residual
        self.concatenate = concatenate  # append conv_residual's channels to the trunk instead of adding them
        self.reads_image = reads_image  # its convs are composed with the head (module docstring)

    def forward(self, trunk: Tensor, image: Tensor) -> Tensor:
        source = image if self.reads_image else trunk
        h = source if self.conv_pointwise is None else self.conv_pointwise(source)
        parts = [activation(conv(h)) for conv, activation in zip(self.part_convs, self.part_activations, strict=True)]
        features = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        residual = self.conv_residual(features)
        return torch.cat([trunk, residual], dim=1) if self.concatenate else trunk + residual


def _deployed_block(
    block: FGNASBlock,
    mult: list[int],
    reads: list[int],
    writes: list[int],
    layout: list[int],
    width: int,
    n: int,
    head: nn.Conv2d | None,
) -> DeployedFGNASBlock:
    """:class:`DeployedFGNASBlock` of ``block`` in a ``width``-channel space whose trunk holds the space
    channels ``layout`` (the space, then the channels earlier blocks appended; ``n``: Eq. 4's branch count);
    ``head``: for the first block, the head conv in the space run one pixel beyond the image, which its convs
    are composed with (:func:`_from_image`)."""
    conv_pointwise = None
    if block.conv_pointwise is not None:
        conv_pointwise = _read_layout(_sliced_conv(block.conv_pointwise, width, columns=reads), layout)
    part_convs, part_activations, columns, factors = [], [], [], []
    kept = channel_branches(block, mult)
    for part, positions in activation_parts(kept).items():
        if block.conv_pointwise is None:
            space_conv = _sliced_conv(block.conv_mult, width, columns=reads, keep_rows=positions)
            part_convs.append(_read_layout(space_conv, layout))
        else:
            part_convs.append(_sliced_conv(block.conv_mult, keep_rows=positions))
        if part == "linear":
            activation, factor = _linear_part(block, kept, positions)
        else:
            activation, factor = nn.Tanh(), torch.ones(len(positions))
        part_activations.append(activation)
        factors.append(factor / n)
        columns.append(positions)
    order = torch.tensor([p for part in columns for p in part], dtype=torch.long)
    scale = torch.cat(factors)
    concatenate = concatenates(len(writes), width)
    # appended: its own rows in ``writes`` order; added: rows at ``writes`` in the trunk, whose first
    # ``width`` channels are the space itself
    residual = (
        _sliced_conv(block.conv_residual)
        if concatenate
        else _sliced_conv(block.conv_residual, len(layout), rows=writes)
    )
    conv_residual = _conv_like(residual, len(order), residual.out_channels)
    with torch.no_grad():
        conv_residual.weight.copy_(residual.weight[:, order] * scale.to(residual.weight)[None, :, None, None])
        assert conv_residual.bias is not None and residual.bias is not None
        conv_residual.bias.copy_(residual.bias)
    if head is not None:
        conv_pointwise, part_convs = _from_image(head, conv_pointwise, part_convs)
    elif conv_pointwise is not None and merges_pointwise(len(layout), conv_pointwise.out_channels, len(order)):
        part_convs, conv_pointwise = [_composed(conv_pointwise, conv) for conv in part_convs], None
    return DeployedFGNASBlock(
        conv_pointwise, part_convs, part_activations, conv_residual, concatenate, reads_image=head is not None
    )


class DeployedFGNAS(nn.Module):
    """The deploy form of an FGNAS subnet (see the module docstring); same surface as the subnet."""

    def __init__(
        self,
        conv_first: nn.Conv2d,
        body: list[DeployedFGNASBlock],
        conv_after_body: nn.Conv2d | None,
        conv_last: nn.Conv2d,
        upscale: int,
        bicubic: BicubicPhases | None,
    ) -> None:
        super().__init__()
        self.num_in_ch, self.upscale = 3, upscale
        self.conv_first = conv_first
        self.body = nn.ModuleList(body)
        self.conv_after_body = conv_after_body
        self.conv_last = conv_last
        self.bicubic = bicubic
        self.pixel_shuffle = nn.PixelShuffle(upscale)

    def forward(self, x: Tensor) -> Tensor:
        head = self.conv_first(x)
        trunk = head
        for block in self.body:
            trunk = block(trunk, x)
        skip = head if self.conv_after_body is None else head + self.conv_after_body(trunk)
        phases = self.conv_last(skip)
        if self.bicubic is not None:
            phases = phases + self.bicubic(x)
        return self.pixel_shuffle(phases)


def deploy_form(subnet: FGNAS) -> DeployedFGNAS:
    """An eval-mode :class:`DeployedFGNAS` computing ``subnet`` (up to float rounding, tested).

    Every map lives in one channel space, trunk ∪ after-body; the head, residual and after-body convs
    write their kept channels at their places in it (a narrow residual write is appended instead) and every
    conv that reads the trunk or the skip takes all of it (zero columns for channels it does not read).
    """
    arch = subnet.arch
    space = sorted(set(arch.trunk_channels()) | set(arch.after_body))
    width = len(space)

    def at(channels: list[int]) -> list[int]:
        return channel_positions(channels, space).tolist()

    conv_first = _sliced_conv(subnet.conv_first, width, rows=at(arch.head))
    extended_head = _with_padding(conv_first, 2)  # the head one pixel beyond the image, as the first block reads it
    layout, body = list(range(width)), list[DeployedFGNASBlock]()
    for block, index in zip(subnet.blocks(), subnet.block_indices, strict=True):
        writes = at(arch.blocks[index].residual)
        body.append(
            _deployed_block(
                block,
                arch.blocks[index].mult_channels(),
                at(arch.trunk_channels(index)),
                writes,
                layout,
                width,
                len(arch.activations),
                extended_head if not body else None,
            )
        )
        layout = layout + writes if body[-1].concatenate else layout
    after_body = None
    if subnet.conv_after_body is not None:
        space_conv = _sliced_conv(
            subnet.conv_after_body, width, rows=at(arch.after_body), columns=at(arch.trunk_channels())
        )
        after_body = _read_layout(space_conv, layout)
    deployed = DeployedFGNAS(
        conv_first=conv_first,
        body=body,
        conv_after_body=after_body,
        conv_last=_sliced_conv(subnet.conv_last, width, columns=at(arch.skip_channels())),
        upscale=subnet.upscale,
        bicubic=None if subnet.bicubic is None else BicubicPhases(3, subnet.upscale),
    )
    return deployed.to(subnet.conv_last.weight.device).eval()
