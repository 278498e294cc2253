"""Whole-image inference with the uniform model surface: uint8 RGB in, uint8 RGB out.

The conversion is :func:`edgesr.data.images.as_input` / :func:`~edgesr.data.images.as_image`, the same
as the deployed runtimes': divide by 255, run the model, clamp to [0, 1], multiply by 255 and round.
Metrics are computed on the rounded uint8 result.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgesr.data.images import as_image, as_input

__all__ = ["super_resolve"]


@torch.inference_mode()
def super_resolve(model: nn.Module, lr: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Run ``model`` (eval mode) on one uint8 LR image and return the uint8 SR image."""
    was_training = model.training
    model.eval()
    try:
        return as_image(model(torch.from_numpy(as_input(lr)).to(device)).cpu().numpy())
    finally:
        model.train(was_training)
