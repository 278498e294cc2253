"""The typed configuration of every zoo architecture: the ``arch`` of a ``models`` entry in ``params.yaml``.

Torch-free on purpose: the ``params.yaml`` schema (:mod:`edgesr.settings`) is validated without
importing PyTorch, while :mod:`edgesr.models` imports every architecture to register its builder. Each
architecture module (:mod:`edgesr.models.fsrcnn`, ...) builds its network from its config here; a
config is picked by its ``type`` field (:data:`ModelConfig`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal, Union

from pydantic import Field, model_validator

from edgesr.schema import StrictModel

__all__ = [
    "SAM_SR_LITE",
    "SAM_SR_XLITE",
    "ActivationName",
    "BicubicConfig",
    "BlockArchitecture",
    "ESPCNConfig",
    "FGNASArchitecture",
    "FGNASConfig",
    "FSRCNNConfig",
    "MapWidths",
    "ModelConfig",
    "PlainResNetConfig",
    "SAMSRConfig",
    "XLSRConfig",
]


class BicubicConfig(StrictModel):
    """Bicubic interpolation (no knobs): the reference row of every table."""

    type: Literal["bicubic"] = "bicubic"


class FSRCNNConfig(StrictModel):
    """FSRCNN(d, s, m); defaults are the paper's FSRCNN(56, 12, 4)."""

    type: Literal["fsrcnn"] = "fsrcnn"
    d: int = Field(56, ge=1, description="LR feature width")
    s: int = Field(12, ge=1, description="shrunk mapping width")
    m: int = Field(4, ge=0, description="number of 3x3 mapping layers")


class ESPCNConfig(StrictModel):
    """ESPCN widths; defaults are the paper's (n1, n2) = (64, 32)."""

    type: Literal["espcn"] = "espcn"
    n1: int = Field(64, ge=1, description="width of the 5x5 layer")
    n2: int = Field(32, ge=1, description="width of the 3x3 layer")


class XLSRConfig(StrictModel):
    """XLSR knobs; defaults are paper 003's network (Fig. 2, Table 1: ~22K parameters at x3)."""

    type: Literal["xlsr"] = "xlsr"
    num_feat: int = Field(32, ge=1, description="trunk width")
    num_skip_feat: int = Field(16, ge=1, description="width of the side conv concatenated before the tail")
    num_block: int = Field(3, ge=0, description="number of GBlocks")
    groups: int = Field(4, ge=1, description="groups of the GBlock 3x3 convs")
    output: Literal["clipped_relu", "linear"] = "clipped_relu"

    @model_validator(mode="after")
    def _groups_divide_width(self) -> XLSRConfig:
        if self.num_feat % self.groups:
            raise ValueError(
                f"num_feat={self.num_feat} must be divisible by groups={self.groups} (GBlock grouped conv)"
            )
        return self


class SAMSRConfig(StrictModel):
    """SAM_SR knobs; the defaults are SAM_SR_XLITE (paper 004 Table 2, nf 16, N 8)."""

    type: Literal["sam_sr"] = "sam_sr"
    nf: int = Field(16, ge=4, description="block width; divisible by 4 (two halving x2 stages at x4)")
    num_blocks: int = Field(8, ge=0, description="number N of body blocks after the first block")
    batch_norm: bool = True
    se: bool = True
    bicubic_skip: bool = True

    @model_validator(mode="after")
    def _width_survives_upsampling(self) -> SAMSRConfig:
        if self.nf % 4:
            raise ValueError(f"nf={self.nf} must be divisible by 4: the x4 upsampler halves the width twice")
        return self


SAM_SR_XLITE = SAMSRConfig(nf=16, num_blocks=8)
"""SAM_SR_XLITE (paper 004 Sec. 4.2, Table 2): nf 16, N 8; 17.98K parameters at x4 in the paper."""

SAM_SR_LITE = SAMSRConfig(nf=72, num_blocks=16)
"""SAM_SR_LITE (paper 004 Sec. 3.2, the AIM 2020 entry): nf 72, N 16; 558.54K parameters at x4."""


class PlainResNetConfig(StrictModel):
    """The plain residual baseline (:mod:`edgesr.models.plain_resnet`); defaults: issue 13's 8 x 32, bilinear skip."""

    type: Literal["plain_resnet"] = "plain_resnet"
    width: int = Field(32, ge=1, description="channels of the head, every block and the global skip")
    num_blocks: int = Field(8, ge=0, description="residual blocks of two 3x3 convs with a ReLU between")
    skip: Literal["bilinear", "bicubic", "none"] = Field("bilinear", description="upsampled input added to the output")


ActivationName = Literal["relu", "prelu", "tanh"]


class BlockArchitecture(StrictModel):
    """One searched block. Empty lists mean the block was pruned away entirely."""

    pointwise: list[int] | None = Field(description="kept 1x1 output channels; null when the block has no 1x1 conv")
    mult: dict[str, list[int]] = Field(description="activation -> Mult channels where that branch is kept")
    residual: list[int] = Field(description="trunk channels the block's last conv adds into")

    def mult_channels(self) -> list[int]:
        """The Mult map's kept channels: the union over the activation branches (Eq. 4)."""
        return sorted(set().union(*self.mult.values()))

    def is_empty(self) -> bool:
        return not self.residual


class MapWidths:
    """The map widths of a supernet with a trunk of ``width`` channels and Mult maps of ``mult_width``.

    Shared by the search's :class:`edgesr.search.settings.SupernetConfig` and the architecture it writes, which
    declare both fields; the annotations below are for the type checker only, so pydantic keeps each model's own
    field order.
    """

    if TYPE_CHECKING:
        width: int
        mult_width: int | None

    @property
    def mult_map_width(self) -> int:
        """Channels of a block's Mult map: ``mult_width`` (WDSR's wide activation), or ``width`` when it is null."""
        return self.mult_width or self.width

    @property
    def widest_map(self) -> int:
        """The widest map a 3x3 conv of the supernet writes: the trunk or the Mult map."""
        return max(self.width, self.mult_map_width)


class FGNASArchitecture(MapWidths, StrictModel):
    """A searched FGNAS architecture (written by the search stage as ``architecture.json``)."""

    width: int = Field(ge=1, description="the supernet's channel width")
    mult_width: int | None = Field(
        None, ge=1, description="the supernet's Mult map width, when it differs from width (wide activation)"
    )
    activations: list[ActivationName] = Field(description="the supernet's branches; the sum is scaled by 1/len")
    head: list[int]
    blocks: list[BlockArchitecture]
    after_body: list[int]

    @model_validator(mode="after")
    def _consistent(self) -> FGNASArchitecture:
        if not self.head:
            raise ValueError("head keeps no channel: the network would ignore its input")
        lists = {"head": (self.head, self.width), "after_body": (self.after_body, self.width)}
        for index, block in enumerate(self.blocks):
            unknown = set(block.mult) - set(self.activations)
            if unknown:
                raise ValueError(f"blocks[{index}].mult names {sorted(unknown)}, not in activations {self.activations}")
            lists[f"blocks[{index}].residual"] = (block.residual, self.width)
            lists |= {f"blocks[{index}].mult.{a}": (v, self.mult_map_width) for a, v in block.mult.items()}
            if block.pointwise is not None:
                lists[f"blocks[{index}].pointwise"] = (block.pointwise, self.width)
            parts = [block.residual, block.mult_channels()] + ([block.pointwise] if block.pointwise is not None else [])
            if any(parts) and not all(parts):
                raise ValueError(
                    f"blocks[{index}] keeps some but not all of its 1x1 / Mult / residual channels; "
                    "a block is either alive in all three or pruned away (edgesr.search.extract cleans this)"
                )
        for key, (channels, width) in lists.items():
            if sorted(set(channels)) != channels or any(not 0 <= c < width for c in channels):
                raise ValueError(f"{key} must be sorted, distinct channel numbers in [0, {width}), got {channels}")
        return self

    def skip_channels(self) -> list[int]:
        """Channels of the global skip that ``conv_last`` reads: head ∪ after-body."""
        return sorted(set(self.head) | set(self.after_body))

    def trunk_channels(self, before_block: int | None = None) -> list[int]:
        """Trunk channels alive before block ``before_block`` (all blocks when None): head ∪ residuals."""
        stop = len(self.blocks) if before_block is None else before_block
        alive = set(self.head).union(*(b.residual for b in self.blocks[:stop]))
        return sorted(alive)


class FGNASConfig(StrictModel):
    """A searched subnet as a zoo model: ``{type: fgnas, architecture: {...}}``."""

    type: Literal["fgnas"] = "fgnas"
    architecture: FGNASArchitecture
    bicubic_skip: bool = False


# Union[...] rather than X | Y: the discriminated union must stay a runtime typing object for pydantic.
ModelConfig = Annotated[
    Union[BicubicConfig, FSRCNNConfig, ESPCNConfig, XLSRConfig, SAMSRConfig, PlainResNetConfig, FGNASConfig],  # noqa: UP007
    Field(discriminator="type"),
]
"""Config of any zoo architecture, picked by its ``type`` field."""
