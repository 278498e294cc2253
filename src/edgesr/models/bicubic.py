"""MATLAB-exact bicubic upscaling by an integer factor, as a fixed polyphase convolution.

The reference row of every SR table (e.g. paper 003 Table 4 "Bicubic", paper 001 Table 2 via SRCNN's
input) and the global skip of SAM_SR (paper 004 Sec. 3.2: "the LR input is bicubically interpolated
... and added to the output"). It reproduces MATLAB's ``imresize(A, s)`` for an integer ``s > 1``,
the same recipe as :mod:`edgesr.data.imresize` and BasicSR's ``matlab_functions.py``:

- Keys' cubic kernel with a = -0.5, support [-2, 2]; no antialiasing when upscaling.
- Output pixel ``i`` (0-based) samples input coordinate ``u = (i + 0.5) / s - 0.5``; the weights of
  each output pixel are normalised to sum to 1.
- Taps outside the image are mirrored with the edge pixel repeated (MATLAB's ``aux = [1:n, n:-1:1]``,
  i.e. ``x[-1] = x[0]``, ``x[-2] = x[1]``).

Writing ``i = s q + p`` gives ``u = q + t_p`` with ``t_p = (p + 0.5) / s - 0.5`` in (-0.5, 0.5), so
the weights depend only on the phase ``p``: the resize is a polyphase filter. Each phase has four
non-zero taps, at ``q-1 .. q+2`` when ``t_p >= 0`` and at ``q-2 .. q+1`` when ``t_p < 0``; one 5-tap
window ``q-2 .. q+2`` (the unused tap has weight exactly 0) serves every phase. The module pads the
input symmetrically by 2, runs a vertical then a horizontal grouped 5-tap convolution that emit the
``s`` x ``s`` phases of every channel, and interleaves them with ``PixelShuffle(s)``: convolutions and
a pixel shuffle only, no Python loop over pixels, any H and W (ONNX/OpenVINO friendly).

Tensor contract: (N, C, H, W) float -> (N, C, sH, sW), same dtype; H, W >= 2. Values are not
clipped (bicubic overshoots slightly at edges, as MATLAB's float ``imresize`` does).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgesr.architectures import BicubicConfig
from edgesr.data.imresize import cubic_kernel
from edgesr.models.registry import MODEL_REGISTRY

__all__ = ["Bicubic", "BicubicPhases", "bicubic_phase_weights", "build_bicubic"]

_TAPS = 5
_PAD = _TAPS // 2


def bicubic_phase_weights(scale: int) -> np.ndarray:
    """(scale, 5) float64 taps: row ``p`` weighs input rows ``q-2 .. q+2`` for output row ``s q + p``."""
    phase = (np.arange(scale, dtype=np.float64) + 0.5) / scale - 0.5
    offsets = np.arange(_TAPS, dtype=np.float64) - _PAD
    weights = cubic_kernel(phase[:, None] - offsets[None, :])
    # MATLAB normalises every output pixel's weights; for a = -0.5 the sum is 1 up to rounding.
    return weights / weights.sum(axis=1, keepdims=True)


def _pad_symmetric(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad H and W by ``pad`` with MATLAB's symmetric rule (edge repeated); needs H, W >= pad."""
    x = torch.cat([x[:, :, :pad].flip(2), x, x[:, :, -pad:].flip(2)], dim=2)
    return torch.cat([x[..., :pad].flip(3), x, x[..., -pad:].flip(3)], dim=3)


class Bicubic(nn.Module):
    """MATLAB ``imresize(x, upscale)`` bicubic upscaling; no learned weights.

    Args:
        num_in_ch: channels of the input (each is resized independently), 3 for RGB.
        upscale: integer factor >= 2.
    """

    vertical: torch.Tensor
    horizontal: torch.Tensor

    def __init__(self, num_in_ch: int = 3, upscale: int = 2) -> None:
        super().__init__()
        if not (isinstance(upscale, int) and upscale >= 2):
            raise ValueError(f"Bicubic needs an integer upscale >= 2, got {upscale!r}")
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_in_ch
        self.upscale = upscale
        phases = torch.from_numpy(bicubic_phase_weights(upscale)).float()  # (s, 5)
        # Vertical pass: channel c -> s row phases, kernel (5, 1); output channel c*s + p_row.
        vertical = phases.repeat(num_in_ch, 1).reshape(num_in_ch * upscale, 1, _TAPS, 1)
        # Horizontal pass: each (c, p_row) -> s column phases; output channel (c*s + p_row)*s + p_col,
        # the order PixelShuffle expects for output pixel (s*h + p_row, s*w + p_col).
        horizontal = phases.repeat(num_in_ch * upscale, 1).reshape(num_in_ch * upscale**2, 1, 1, _TAPS)
        # Derived from ``upscale`` alone, so kept out of state_dict (checkpoints stay weight-only).
        self.register_buffer("vertical", vertical, persistent=False)
        self.register_buffer("horizontal", horizontal, persistent=False)
        self.pixel_shuffle = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, sH, sW)."""
        if x.shape[-2] < _PAD or x.shape[-1] < _PAD:
            raise ValueError(f"Bicubic needs H, W >= {_PAD}, got input of shape {tuple(x.shape)}")
        x = _pad_symmetric(x, _PAD)
        x = F.conv2d(x, self.vertical, groups=self.num_in_ch)
        x = F.conv2d(x, self.horizontal, groups=self.num_in_ch * self.upscale)
        return self.pixel_shuffle(x)

    def extra_repr(self) -> str:
        return f"num_in_ch={self.num_in_ch}, upscale={self.upscale}"


class BicubicPhases(nn.Module):
    """The ``C s^2`` phase channels of :class:`Bicubic` before its pixel shuffle, as one 5x5 conv.

    Phase ``(p_row, p_col)`` of channel ``c`` (output channel ``(c s + p_row) s + p_col``, the order
    ``PixelShuffle`` reads) weighs the 5x5 window by the outer product of the row and column taps of
    :func:`bicubic_phase_weights`: one grouped conv instead of the vertical and horizontal passes, so that
    a network can add these phases to its own last conv and run a single pixel shuffle (the deploy form of
    :mod:`edgesr.deploy.fgnas_form`). ``PixelShuffle(s)(BicubicPhases(C, s)(x)) == Bicubic(C, s)(x)``
    up to float rounding (tested).
    """

    weight: torch.Tensor

    def __init__(self, num_in_ch: int = 3, upscale: int = 2) -> None:
        super().__init__()
        if not (isinstance(upscale, int) and upscale >= 2):
            raise ValueError(f"BicubicPhases needs an integer upscale >= 2, got {upscale!r}")
        self.num_in_ch, self.upscale = num_in_ch, upscale
        phases = torch.from_numpy(bicubic_phase_weights(upscale))  # (s, 5)
        kernels = (phases[:, None, :, None] * phases[None, :, None, :]).reshape(upscale * upscale, 1, _TAPS, _TAPS)
        self.register_buffer("weight", kernels.float().repeat(num_in_ch, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C s^2, H, W)."""
        if x.shape[-2] < _PAD or x.shape[-1] < _PAD:
            raise ValueError(f"BicubicPhases needs H, W >= {_PAD}, got input of shape {tuple(x.shape)}")
        return F.conv2d(_pad_symmetric(x, _PAD), self.weight, groups=self.num_in_ch)

    def extra_repr(self) -> str:
        return f"num_in_ch={self.num_in_ch}, upscale={self.upscale}"


@MODEL_REGISTRY.register("bicubic")
def build_bicubic(cfg: BicubicConfig, scale: int) -> Bicubic:
    """Bicubic x``scale`` on RGB."""
    return Bicubic(num_in_ch=3, upscale=scale)
