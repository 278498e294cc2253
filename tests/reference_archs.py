"""Published baselines used only to check :func:`edgesr.complexity.count_complexity` against paper 001
Table 2 (x2, Mult-Adds at a 1280x720 output).

Each model takes the LR image and returns the x``upscale`` image, like the zoo. SRCNN and VDSR work on
the Y channel at HR size: they bicubically pre-upsample inside ``forward`` with ``F.interpolate``,
which the counter prices at 0 (the papers count only their convolutions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EDSRBaseline", "SRCNN", "VDSR"]


class SRCNN(nn.Module):
    """SRCNN 9-5-5 (Dong et al., TPAMI 2016): 64 and 32 filters, Y channel, 'same' padding, at HR size.

    Params 9*9*64 + 64 + 5*5*64*32 + 32 + 5*5*32 + 1 = 57,281 (Table 2: 57K).
    """

    num_in_ch = 1

    def __init__(self, upscale: int = 2) -> None:
        super().__init__()
        self.upscale = upscale
        self.body = nn.Sequential(
            nn.Conv2d(1, 64, 9, padding=4),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 32, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 1, 5, padding=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(F.interpolate(x, scale_factor=self.upscale, mode="bicubic", align_corners=False))


class VDSR(nn.Module):
    """VDSR (Kim et al., CVPR 2016): 20 3x3 layers of 64 channels, Y channel, global residual, at HR size.

    Params 640 + 18 * 36,928 + 577 = 665,921 (Table 2: 665K).
    """

    num_in_ch = 1

    def __init__(self, upscale: int = 2, num_layers: int = 20, num_feat: int = 64) -> None:
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(1, num_feat, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(num_layers - 2):
            layers += [nn.Conv2d(num_feat, num_feat, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(num_feat, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upsampled = F.interpolate(x, scale_factor=self.upscale, mode="bicubic", align_corners=False)
        return upsampled + self.body(upsampled)


class _ResBlock(nn.Module):
    def __init__(self, num_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_feat, num_feat, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(num_feat, num_feat, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)  # residual scaling 1 in the baseline


class EDSRBaseline(nn.Module):
    """EDSR baseline x2 (Lim et al., CVPRW 2017): 16 residual blocks of 64 features, RGB, on the LR grid.

    Upsampler: conv 64 -> 256 + PixelShuffle(2). The mean-shift convs of the original code are fixed
    and not counted. Params 1,792 + 32 * 36,928 + 36,928 + 147,712 + 1,731 = 1,369,859 (Table 2: 1,370K).
    """

    num_in_ch = 3

    def __init__(self, num_feat: int = 64, num_block: int = 16) -> None:
        super().__init__()
        self.conv_first = nn.Conv2d(3, num_feat, 3, padding=1)
        self.body = nn.Sequential(*(_ResBlock(num_feat) for _ in range(num_block)))
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, padding=1)
        self.upsample = nn.Sequential(nn.Conv2d(num_feat, 4 * num_feat, 3, padding=1), nn.PixelShuffle(2))
        self.conv_last = nn.Conv2d(num_feat, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv_first(x)
        features = features + self.conv_after_body(self.body(features))
        return self.conv_last(self.upsample(features))
