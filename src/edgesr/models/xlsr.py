"""XLSR: Ayazoglu, "Extremely Lightweight Quantization Robust Real-Time Single-Image Super Resolution for
Mobile Devices", CVPRW 2021 (paper 003).

Network (paper 003 Fig. 2), on the LR grid until the depth-to-space:

    stem        Conv 3x3, C -> 32, ReLU    (drawn as 4 parallel 3x3 convs of 8 filters, concatenated:
                                            the same operator as one 32-filter conv)
                Conv 1x1, 32 -> 32          (mixes the four stem groups)
    body        3 x GBlock(32)
    side        Conv 3x3, C -> 16           (on the LR input, no activation)
    concat      [body, side] -> 48 channels (concatenation instead of an addition: elementwise ops are
                                            slow on the target NPU, Sec. 3.1)
    tail        Conv 1x1, 48 -> 32, ReLU
                Conv 3x3, 32 -> C s^2
                PixelShuffle(s)             (Depth2Space)
    output      Clipped ReLU min(max(x, 0), 1) (Eq. 2, Sec. 3.2) or linear

GBlock (paper 003 Fig. 3, the "root" module of Ioannou et al. with the ResNeXt skip removed and
ShuffleNet's channel shuffle relaxed to a 1x1 convolution, Sec. 3.1):
grouped Conv 3x3 (4 groups), ReLU, Conv 1x1.

Parameters at x3 (the scale of paper 003 Table 1): 448 (side) + 896 + 1,056 (stem) + 3 x 3,392
(GBlocks) + 1,568 + 7,803 (tail) = 21,947; Table 1 rounds this to "22K", which is the only
difference. x2 has 17,612 and x4 28,016 (only the last conv depends on s).

The clipped output is the model's quantisation-robustness device (Sec. 3.2, Table 2): it bounds the
output so that int8 calibration is not skewed by outliers; ``output="linear"`` is the ablation.
Initialisation (Sec. 4.2): He-normal scaled by 0.1 in variance, i.e. N(0, 0.1 * 2 / fan_in), zero
biases, so that early activations stay small and outlier-free.

Tensor contract: (N, 3, H, W) float RGB in [0, 1] -> (N, 3, sH, sW), in [0, 1] when clipped.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgesr.architectures import XLSRConfig
from edgesr.models.registry import MODEL_REGISTRY

__all__ = ["GBlock", "XLSR", "build_xlsr"]

_INIT_VARIANCE_SCALE = 0.1


class GBlock(nn.Module):
    """Grouped 3x3 conv + ReLU, then a 1x1 conv that mixes the groups (paper 003 Fig. 3).

    (N, C, H, W) -> (N, C, H, W); C must be divisible by ``groups``.
    """

    def __init__(self, num_feat: int = 32, groups: int = 4) -> None:
        super().__init__()
        if num_feat % groups:
            raise ValueError(f"GBlock width {num_feat} is not divisible by its {groups} groups")
        self.conv_group = nn.Conv2d(num_feat, num_feat, 3, padding=1, groups=groups)
        self.act = nn.ReLU(inplace=True)
        self.conv_mix = nn.Conv2d(num_feat, num_feat, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_mix(self.act(self.conv_group(x)))


class XLSR(nn.Module):
    """XLSR (paper 003 Fig. 2).

    Args:
        num_in_ch: input channels (3 for RGB).
        num_out_ch: output channels (3 for RGB).
        upscale: integer scale factor >= 2.
        num_feat: trunk width (paper: 32).
        num_skip_feat: width of the side 3x3 conv concatenated before the tail (paper: 16).
        num_block: number of GBlocks (paper: 3).
        groups: groups of the GBlock 3x3 convs (paper: 4).
        clip_output: Clipped ReLU on the output (paper) or linear (ablation of Table 2).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        upscale: int = 3,
        num_feat: int = 32,
        num_skip_feat: int = 16,
        num_block: int = 3,
        groups: int = 4,
        clip_output: bool = True,
    ) -> None:
        super().__init__()
        if not (isinstance(upscale, int) and upscale >= 2):
            raise ValueError(f"XLSR needs an integer upscale >= 2, got {upscale!r}")
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.upscale = upscale
        self.conv_first = nn.Sequential(nn.Conv2d(num_in_ch, num_feat, 3, padding=1), nn.ReLU(inplace=True))
        self.conv_stem_mix = nn.Conv2d(num_feat, num_feat, 1)
        self.body = nn.Sequential(*(GBlock(num_feat, groups) for _ in range(num_block)))
        self.conv_side = nn.Conv2d(num_in_ch, num_skip_feat, 3, padding=1)
        fused_width = num_feat + num_skip_feat
        self.conv_fuse = nn.Sequential(nn.Conv2d(fused_width, num_feat, 1), nn.ReLU(inplace=True))
        self.conv_last = nn.Conv2d(num_feat, num_out_ch * upscale**2, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(upscale)
        # Hardtanh(0, 1) is min(max(x, 0), 1) and exports as one Clip node.
        self.output_act: nn.Module = nn.Hardtanh(0.0, 1.0) if clip_output else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """Paper 003 Sec. 4.2: He-normal with 0.1 variance scaling, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                module.weight.data.mul_(math.sqrt(_INIT_VARIANCE_SCALE))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, sH, sW)."""
        trunk = self.body(self.conv_stem_mix(self.conv_first(x)))
        features = torch.cat([trunk, self.conv_side(x)], dim=1)
        out = self.pixel_shuffle(self.conv_last(self.conv_fuse(features)))
        return self.output_act(out)


@MODEL_REGISTRY.register("xlsr")
def build_xlsr(cfg: XLSRConfig, scale: int) -> XLSR:
    """XLSR on RGB at ``scale``."""
    return XLSR(
        num_in_ch=3,
        num_out_ch=3,
        upscale=scale,
        num_feat=cfg.num_feat,
        num_skip_feat=cfg.num_skip_feat,
        num_block=cfg.num_block,
        groups=cfg.groups,
        clip_output=cfg.output == "clipped_relu",
    )
