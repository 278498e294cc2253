"""Whole-image inference with the uniform model surface: uint8 RGB in, uint8 RGB out.

Conversion follows BasicSR's ``img2tensor`` / ``tensor2img``: divide by 255, run the model, clamp
to [0, 1], multiply by 255 and round. Metrics are computed on the rounded uint8 result.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["to_tensor", "to_uint8", "super_resolve"]


def to_tensor(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(device).float().div_(255.0)[None]


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """float (1, 3, H, W) in [0, 1] -> uint8 (H, W, 3), clamped and rounded."""
    return tensor[0].clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()


@torch.inference_mode()
def super_resolve(model: nn.Module, lr: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Run ``model`` (eval mode) on one uint8 LR image and return the uint8 SR image."""
    was_training = model.training
    model.eval()
    try:
        return to_uint8(model(to_tensor(lr, device)))
    finally:
        model.train(was_training)
