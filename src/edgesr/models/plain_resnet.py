"""A plain residual SR network: the honest hand-designed baseline the searched subnets must beat (issue 13).

EDSR's residual body without its tricks (Lim et al., CVPR-W 2017, Fig. 2; the block FGNAS's search space
starts from, paper 001 Table 5 (1)), at edge size:

    head       Conv 3x3, 3 -> width
    body       num_blocks x [Conv 3x3, ReLU, Conv 3x3] + identity        (no BatchNorm)
    global     head + body(head)
    tail       Conv 3x3, width -> 3 s^2, PixelShuffle(s)
    skip       + the upsampled input: bilinear, MATLAB bicubic or none

The defaults (8 blocks, width 32, bilinear skip: 152 K parameters, 35 G Mult-Adds for a 1280x720 output at
x2) are the network of issue 13. With the bicubic skip its phases are added to the tail's output before the
single pixel shuffle (:class:`~edgesr.models.bicubic.BicubicPhases`, module ``bicubic``: kept in float by
``quantize.float_modules``), the same function as adding :class:`~edgesr.models.bicubic.Bicubic` after it.

Tensor contract: (N, 3, H, W) float RGB in [0, 1] -> (N, 3, sH, sW) (not clipped).
"""

from __future__ import annotations

import torch
from torch import nn

from edgesr.architectures import PlainResNetConfig
from edgesr.models.bicubic import BicubicPhases
from edgesr.models.registry import MODEL_REGISTRY

__all__ = ["PlainResNet", "build_plain_resnet"]


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(x))), two 3x3 convs of ``width`` channels."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class PlainResNet(nn.Module):
    """Head, ``num_blocks`` residual blocks with a skip around the body, a sub-pixel tail and an input skip."""

    def __init__(self, upscale: int = 2, width: int = 32, num_blocks: int = 8, skip: str = "bilinear") -> None:
        super().__init__()
        if not (isinstance(upscale, int) and upscale >= 2):
            raise ValueError(f"PlainResNet needs an integer upscale >= 2, got {upscale!r}")
        self.num_in_ch, self.upscale, self.skip = 3, upscale, skip
        self.conv_first = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(*(ResidualBlock(width) for _ in range(num_blocks)))
        self.conv_last = nn.Conv2d(width, 3 * upscale * upscale, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(upscale)
        self.bicubic = BicubicPhases(3, upscale) if skip == "bicubic" else None
        self.bilinear = nn.Upsample(scale_factor=upscale, mode="bilinear") if skip == "bilinear" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.conv_first(x)
        phases = self.conv_last(head + self.body(head))
        if self.bicubic is not None:
            phases = phases + self.bicubic(x)
        out = self.pixel_shuffle(phases)
        return out if self.bilinear is None else out + self.bilinear(x)


@MODEL_REGISTRY.register("plain_resnet")
def build_plain_resnet(cfg: PlainResNetConfig, scale: int) -> PlainResNet:
    """The plain residual network of ``cfg`` at ``scale``."""
    return PlainResNet(upscale=scale, width=cfg.width, num_blocks=cfg.num_blocks, skip=cfg.skip)
