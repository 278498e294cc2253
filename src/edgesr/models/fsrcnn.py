"""FSRCNN: Dong, Loy, Tang, "Accelerating the Super-Resolution Convolutional Neural Network", ECCV 2016.

The reference row "FSRCNN" of paper 003 (Tables 1, 4, 5) and paper 004 (Table 3). Structure (Dong et
al. Sec. 3.1, notation FSRCNN(d, s, m)), all on the LR grid until the last layer:

    feature extraction  Conv 5x5, C -> d, PReLU
    shrinking           Conv 1x1, d -> s, PReLU
    mapping             m x (Conv 3x3, s -> s, PReLU)
    expanding           Conv 1x1, s -> d, PReLU
    deconvolution       ConvTranspose 9x9, d -> C, stride = upscale

Paper defaults d = 56, s = 12, m = 4. The original works on the Y channel; like paper 003 (Table 1
and Table 5, "converted to RGB input and RGB output") we use RGB in and out (C = 3), which gives
24,683 parameters at x3 (paper 003 Table 1: 25K). PReLU slopes are per channel (Caffe's default in
the original). Initialisation as Dong et al. Sec. 3.3: He et al. for the convolutions, a zero-mean
Gaussian with standard deviation 0.001 for the deconvolution, zero biases.

The deconvolution's padding ``p = ceil((9 - s) / 2)`` and output padding ``2 p - (9 - s)`` make the
output exactly ``s H x s W`` for every integer scale from 2 to 8.

Tensor contract: (N, 3, H, W) float RGB in [0, 1] -> (N, 3, sH, sW) (not clipped).
"""

from __future__ import annotations

import torch
from torch import nn

from edgesr.architectures import FSRCNNConfig
from edgesr.models.registry import MODEL_REGISTRY

__all__ = ["FSRCNN", "build_fsrcnn"]

_DECONV_KERNEL = 9


def _conv_prelu(in_ch: int, out_ch: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2), nn.PReLU(out_ch))


class FSRCNN(nn.Module):
    """FSRCNN(d, s, m) with a stride-``upscale`` 9x9 deconvolution as the upsampler.

    Args:
        num_in_ch: input channels (3 for RGB).
        num_out_ch: output channels (3 for RGB).
        upscale: integer scale factor, 2 to 8.
        d: LR feature width (paper: 56).
        s: shrunk mapping width (paper: 12).
        m: number of 3x3 mapping layers (paper: 4).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        upscale: int = 2,
        d: int = 56,
        s: int = 12,
        m: int = 4,
    ) -> None:
        super().__init__()
        if not (isinstance(upscale, int) and 2 <= upscale < _DECONV_KERNEL):
            raise ValueError(f"FSRCNN's 9x9 deconvolution supports integer upscale 2..8, got {upscale!r}")
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.upscale = upscale
        self.conv_first = _conv_prelu(num_in_ch, d, 5)
        self.shrink = _conv_prelu(d, s, 1)
        self.body = nn.Sequential(*(_conv_prelu(s, s, 3) for _ in range(m)))
        self.expand = _conv_prelu(s, d, 1)
        # (H - 1) s - 2 p + 9 + output_padding = s H  <=>  output_padding = 2 p - (9 - s), in {0, 1} < s.
        padding = (_DECONV_KERNEL - upscale + 1) // 2
        self.deconv = nn.ConvTranspose2d(
            d,
            num_out_ch,
            _DECONV_KERNEL,
            stride=upscale,
            padding=padding,
            output_padding=2 * padding - (_DECONV_KERNEL - upscale),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """Dong et al. Sec. 3.3: He initialisation for convs, N(0, 0.001^2) for the deconvolution."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0.25, nonlinearity="leaky_relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.deconv.weight, std=0.001)
        if self.deconv.bias is not None:
            nn.init.zeros_(self.deconv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, sH, sW)."""
        x = self.expand(self.body(self.shrink(self.conv_first(x))))
        return self.deconv(x)


@MODEL_REGISTRY.register("fsrcnn")
def build_fsrcnn(cfg: FSRCNNConfig, scale: int) -> FSRCNN:
    """FSRCNN on RGB at ``scale``."""
    return FSRCNN(num_in_ch=3, num_out_ch=3, upscale=scale, d=cfg.d, s=cfg.s, m=cfg.m)
