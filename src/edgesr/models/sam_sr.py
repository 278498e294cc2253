"""SAM_SR: Wang, Bhaskara, Levinshtein, Tsogkas, Jepson, "Efficient Super-Resolution Using MobileNetV3",
ECCVW 2020 (paper 004): SAM_SR_LITE and SAM_SR_XLITE.

Network (paper 004 Sec. 3.2, Fig. 2), for LR input x:

    first       MobileNetV3 block, C -> nf                          (block 0, no SE, see below)
    body        N x MobileNetV3 block, nf -> nf                     (blocks 1..N, each with SE)
    skip        body(first) + first                                 ("from the output of the first
                                                                     block to the output of the last")
    upsampler   per x2 stage (two for x4, Sec. 3.2; one x3 stage for x3):
                depthwise 3x3 (c), 1x1 c -> (c/2) r^2, PixelShuffle(r), LeakyReLU(0.2)
    post        depthwise 3x3 (c), 1x1 c -> c, LeakyReLU(0.2), 1x1 c -> C
                                                                    ("a depth-wise separable
                                                                     convolution together with a
                                                                     1x1 convolution")
    output      post + Bicubic_s(x)                                 (global bicubic skip)

MobileNetV3 block (Howard et al. 2019, adapted in Sec. 3.2): 1x1 expansion to 2 nf (expansion factor
2), BatchNorm, LeakyReLU(0.2) (instead of h-swish); depthwise 3x3, BatchNorm, LeakyReLU(0.2);
squeeze-excitation with reduction 4 (ReLU, hard-sigmoid gate, bias-free FCs as 1x1 convs); 1x1
projection to nf, BatchNorm; identity residual when input and output widths agree. Stride 1
everywhere: the network works at the LR resolution until the upsampler. Convolutions followed by
BatchNorm have no bias.

Variants (paper 004 Table 2; :data:`edgesr.architectures.SAM_SR_XLITE`, ``SAM_SR_LITE``):

    SAM_SR_XLITE  nf 16, N 8    paper 17.98K params (x4)   this code 17,931
    SAM_SR_LITE   nf 72, N 16   paper 558.54K params (x4)  this code 557,571

Where the counts come from. Per body block: expansion 2 nf^2, depthwise 18 nf, SE 2 nf^2, projection
2 nf^2, BatchNorm 10 nf, i.e. 6 nf^2 + 28 nf; the N-differences of Table 2 ((16, 16) - (16, 8) and
(32, 16) - (32, 8)) equal exactly 8 such blocks. Table 4 pins the rest of the block structure
exactly: "w/o batch norm" removes 1.44K = (N+1) x 10 nf at nf 16 (BatchNorm in all N+1 blocks, no
conv bias returns), "w/o SE" removes 4.1K = N x 2 nf^2 (4,096: SE in N of the N+1 blocks, bias-free;
for LITE 165,888, "-165K"), so block 0, whose input is the 3-channel image, carries none. Block 0 has
2 nf^2 + 34 nf parameters. Fig. 2's upsampler and post-processing widths are not in the text;
fitting Table 2's seven (nf, N) rows gives them 2.75 nf^2 + 21.5 nf + 3 parameters, and the
depthwise-separable stages above have 2.5625 nf^2 + 21.5 nf + 3, i.e. 3/16 nf^2 fewer (48
parameters at nf 16, 972 at nf 72): -0.27% for XLITE, -0.17% for LITE. The same fit says the paper's
upsampler does more of its work at HR than ours: on a 256x256 LR input (Table 2's FLOPs) this code
needs 0.93 G Mult-Adds for XLITE and 26.0 G for LITE, i.e. 1.86 and 51.9 GFLOPs against the
paper's 2.58 and 58.6 (which also count BatchNorm and pooling).

Export (paper 004 Sec. 4.4, Table 4 "SAM_SR_LITE_FUSED"): :func:`fold_batchnorm` folds every
BatchNorm into the convolution before it, which leaves the eval-mode output unchanged.

Switches (the ablations of Table 4): ``batch_norm`` (BatchNorm -> identity), ``se`` (SE -> identity),
``bicubic_skip`` (drop the global bicubic skip).

Tensor contract: (N, 3, H, W) float RGB in [0, 1] -> (N, 3, sH, sW) (not clipped); H, W >= 2.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from edgesr.architectures import SAMSRConfig
from edgesr.models.bicubic import Bicubic
from edgesr.models.registry import MODEL_REGISTRY

__all__ = ["SAMSR", "MobileNetV3Block", "SqueezeExcite", "build_sam_sr", "fold_batchnorm"]

_EXPANSION = 2
_SE_REDUCTION = 4
_NEGATIVE_SLOPE = 0.2


def _leaky_relu() -> nn.LeakyReLU:
    return nn.LeakyReLU(_NEGATIVE_SLOPE, inplace=True)


def _conv_bn(
    in_ch: int, out_ch: int, kernel_size: int, *, groups: int = 1, batch_norm: bool, act: bool
) -> nn.Sequential:
    """Bias-free conv, BatchNorm (or identity), optional LeakyReLU: the unit :func:`fold_batchnorm` fuses."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch) if batch_norm else nn.Identity(),
    ]
    if act:
        layers.append(_leaky_relu())
    return nn.Sequential(*layers)


def _separable(in_ch: int, out_ch: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1, both with bias (no BatchNorm outside the blocks)."""
    return nn.Sequential(nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch), nn.Conv2d(in_ch, out_ch, 1))


def _stage_factors(upscale: int) -> list[int]:
    """Pixel-shuffle factors of the upsampler: x2 -> [2], x3 -> [3], x4 -> [2, 2] (paper 004 Sec. 3.2)."""
    factors, rest = [], upscale
    for prime in (2, 3):
        while rest % prime == 0:
            factors.append(prime)
            rest //= prime
    if rest != 1 or not factors:
        raise ValueError(f"SAM_SR upsamples in x2 and x3 pixel-shuffle stages; {upscale!r} is not 2^a 3^b")
    return factors


class SqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-excitation: x * hard_sigmoid(W2 relu(W1 avgpool(x))), bias-free, reduction 4.

    (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = _SE_REDUCTION) -> None:
        super().__init__()
        squeezed = channels // reduction
        if squeezed < 1:
            raise ValueError(f"SE on {channels} channels with reduction {reduction} leaves no channel")
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, squeezed, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(squeezed, channels, 1, bias=False),
            nn.Hardsigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class MobileNetV3Block(nn.Module):
    """Stride-1 MobileNetV3 inverted residual with LeakyReLU(0.2) (paper 004 Sec. 3.2, Fig. 1c).

    (N, in_ch, H, W) -> (N, out_ch, H, W); identity residual when ``in_ch == out_ch``.
    """

    def __init__(self, in_ch: int, out_ch: int, hidden_ch: int, *, se: bool, batch_norm: bool) -> None:
        super().__init__()
        self.expand = _conv_bn(in_ch, hidden_ch, 1, batch_norm=batch_norm, act=True)
        self.depthwise = _conv_bn(hidden_ch, hidden_ch, 3, groups=hidden_ch, batch_norm=batch_norm, act=True)
        self.se: nn.Module = SqueezeExcite(hidden_ch) if se else nn.Identity()
        self.project = _conv_bn(hidden_ch, out_ch, 1, batch_norm=batch_norm, act=False)
        self.residual = in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return out + x if self.residual else out


class SAMSR(nn.Module):
    """SAM_SR (paper 004 Fig. 2); see the module docstring for the layer list and parameter counts.

    Args:
        num_in_ch: input channels (3 for RGB).
        num_out_ch: output channels (3 for RGB; must equal ``num_in_ch`` with the bicubic skip).
        upscale: 2, 3 or 4 (any 2^a 3^b whose stages keep the width integral).
        num_feat: block width nf (XLITE 16, LITE 72).
        num_block: number N of body blocks after the first one (XLITE 8, LITE 16).
        batch_norm: BatchNorm in the blocks (Table 4 ablation when False).
        se: squeeze-excitation in the body blocks (Table 4 ablation when False).
        bicubic_skip: add the bicubically upscaled input to the output (Table 4 ablation when False).
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        upscale: int = 4,
        num_feat: int = 16,
        num_block: int = 8,
        batch_norm: bool = True,
        se: bool = True,
        bicubic_skip: bool = True,
    ) -> None:
        super().__init__()
        factors = _stage_factors(upscale)
        if num_feat % 2 ** len(factors):
            raise ValueError(
                f"SAM_SR x{upscale} halves the width in each of its {len(factors)} upsampling stages; "
                f"num_feat={num_feat} must be divisible by {2 ** len(factors)}"
            )
        if bicubic_skip and num_out_ch != num_in_ch:
            raise ValueError(f"the bicubic skip needs num_out_ch == num_in_ch, got {num_out_ch}, {num_in_ch}")
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.upscale = upscale
        hidden = _EXPANSION * num_feat
        self.block_first = MobileNetV3Block(num_in_ch, num_feat, hidden, se=False, batch_norm=batch_norm)
        self.body = nn.Sequential()
        for _ in range(num_block):
            self.body.append(MobileNetV3Block(num_feat, num_feat, hidden, se=se, batch_norm=batch_norm))
        stages: list[nn.Module] = []
        width = num_feat
        for factor in factors:
            out_width = width // 2
            stages += [_separable(width, out_width * factor**2), nn.PixelShuffle(factor), _leaky_relu()]
            width = out_width
        self.upsample = nn.Sequential(*stages)
        self.post = nn.Sequential(_separable(width, width), _leaky_relu(), nn.Conv2d(width, num_out_ch, 1))
        self.bicubic: Bicubic | None = Bicubic(num_in_ch, upscale) if bicubic_skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, sH, sW)."""
        first = self.block_first(x)
        features = self.body(first) + first
        out = self.post(self.upsample(features))
        return out + self.bicubic(x) if self.bicubic is not None else out


@torch.no_grad()
def _fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One conv equal to ``bn(conv(x))`` with the BatchNorm in eval mode (running statistics).

    With k = gamma / sqrt(running_var + eps): W' = k W (per output channel), b' = k (b - running_mean) + beta.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    var = bn.running_var.double()
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(var)
    shift = (bias - bn.running_mean.double()) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    fused = copy.deepcopy(conv)
    # Folded in float64 so the fused weights carry no rounding beyond the final cast.
    fused.weight.copy_((conv.weight.double() * scale.reshape(-1, 1, 1, 1)).to(conv.weight.dtype))
    fused.bias = nn.Parameter(shift.to(conv.weight.dtype))
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Export form: a deep copy of ``model`` in which every Conv2d -> BatchNorm2d pair is one conv.

    Pairs are found as adjacent entries of an ``nn.Sequential`` (how every edgesr model builds them);
    the conv is replaced by the folded conv (:func:`_fold_conv_bn`) and the BatchNorm by ``nn.Identity``.
    The copy is returned in eval mode and equals ``model.eval()`` up to float rounding (paper 004
    Sec. 4.4: "without any performance change"); ``model`` itself is not modified.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for index in range(len(module) - 1):
            conv, bn = module[index], module[index + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[index] = _fold_conv_bn(conv, bn)
                module[index + 1] = nn.Identity()
    return folded


@MODEL_REGISTRY.register("sam_sr")
def build_sam_sr(cfg: SAMSRConfig, scale: int) -> SAMSR:
    """SAM_SR on RGB at ``scale``."""
    return SAMSR(
        num_in_ch=3,
        num_out_ch=3,
        upscale=scale,
        num_feat=cfg.nf,
        num_block=cfg.num_blocks,
        batch_norm=cfg.batch_norm,
        se=cfg.se,
        bicubic_skip=cfg.bicubic_skip,
    )
