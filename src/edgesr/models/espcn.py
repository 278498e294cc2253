"""ESPCN: Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel
Convolutional Neural Network", CVPR 2016.

The reference row "ESPCN" of paper 003 (Tables 1, 4, 5). Structure (Shi et al. Sec. 3, l = 3 with
(f1, n1) = (5, 64), (f2, n2) = (3, 32), f3 = 3, tanh activations), all on the LR grid:

    Conv 5x5, C -> n1, tanh
    Conv 3x3, n1 -> n2, tanh
    Conv 3x3, n2 -> C r^2
    PixelShuffle(r)  (the "periodic shuffling" / depth-to-space of Sec. 2.2)

The original works on the Y channel; like paper 003 (Table 1 and Table 5, RGB input and output) we
use RGB in and out (C = 3), which gives 31,131 parameters at x3 (paper 003 Table 1: 31K).

Tensor contract: (N, 3, H, W) float RGB in [0, 1] -> (N, 3, rH, rW) (not clipped).
"""

from __future__ import annotations

import torch
from torch import nn

from edgesr.architectures import ESPCNConfig
from edgesr.models.registry import MODEL_REGISTRY

__all__ = ["ESPCN", "build_espcn"]


class ESPCN(nn.Module):
    """Three LR convolutions and a sub-pixel (PixelShuffle) output layer.

    Args:
        num_in_ch: input channels (3 for RGB).
        num_out_ch: output channels (3 for RGB).
        upscale: integer scale factor r >= 2.
        n1: width of the 5x5 layer (paper: 64).
        n2: width of the 3x3 layer (paper: 32).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        upscale: int = 2,
        n1: int = 64,
        n2: int = 32,
    ) -> None:
        super().__init__()
        if not (isinstance(upscale, int) and upscale >= 2):
            raise ValueError(f"ESPCN needs an integer upscale >= 2, got {upscale!r}")
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.upscale = upscale
        self.body = nn.Sequential(
            nn.Conv2d(num_in_ch, n1, 5, padding=2),
            nn.Tanh(),
            nn.Conv2d(n1, n2, 3, padding=1),
            nn.Tanh(),
        )
        self.conv_last = nn.Conv2d(n2, num_out_ch * upscale**2, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, rH, rW)."""
        return self.pixel_shuffle(self.conv_last(self.body(x)))


@MODEL_REGISTRY.register("espcn")
def build_espcn(cfg: ESPCNConfig, scale: int) -> ESPCN:
    """ESPCN on RGB at ``scale``."""
    return ESPCN(num_in_ch=3, num_out_ch=3, upscale=scale, n1=cfg.n1, n2=cfg.n2)
