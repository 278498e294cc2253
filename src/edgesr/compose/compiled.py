"""ClassSR's classifier with its feature layers compiled by OpenVINO, for a composition that runs on OpenVINO.

Mixing two runtimes' thread pools in one process (PyTorch's OpenMP threads for the classifier,
OpenVINO's for the branches) makes them wait on each other on a 2-core device; here the whole composed
model runs on OpenVINO. The feature layers (:attr:`PatchClassifier.features`) are exported
(``torch.export``) with dynamic batch, height and width (sides of at least :data:`MIN_SIDE`), converted
and compiled in fp32 with ``deploy.threads`` threads; the pooling over each patch's window and the
linear layer (32 x M Mult-Adds per patch) stay in :meth:`PatchClassifier.grid_logits`.
"""

from __future__ import annotations

import numpy as np
import openvino as ov
import torch
from torch import Tensor

from edgesr.compose.classifier import PatchClassifier
from edgesr.compose.grid import PatchGrid
from edgesr.deploy.runtimes import infer_copy, openvino_config

__all__ = ["MIN_SIDE", "OpenVINOClassifier"]

MIN_SIDE = 8
"""The smallest image or patch side the compiled features take (torch.export specialises sides under 8)."""


class OpenVINOClassifier:
    """A :class:`~edgesr.compose.composed.Router`: ``classifier``'s argmax, its features run by OpenVINO."""

    def __init__(self, classifier: PatchClassifier, threads: int) -> None:
        self.classifier = classifier.eval()
        batch, height, width = (
            torch.export.Dim("batch"),
            *(torch.export.Dim(s, min=MIN_SIDE) for s in ("height", "width")),
        )
        program = torch.export.export(
            classifier.features, (torch.rand(2, 3, 32, 36),), dynamic_shapes=({0: batch, 2: height, 3: width},)
        )
        model = ov.convert_model(program)
        self._request = ov.Core().compile_model(model, "CPU", config=openvino_config(threads)).create_infer_request()

    def _features(self, images: Tensor) -> Tensor:
        return torch.from_numpy(infer_copy(self._request, images.numpy()))

    def mult_adds(self, grid: PatchGrid) -> int:
        return self.classifier.mult_adds(grid)

    def route(self, patches: np.ndarray, image: np.ndarray, grid: PatchGrid) -> np.ndarray:
        """Branch index of every patch of ``grid`` over a float32 ``(1, 3, H, W)`` ``image``."""
        logits = self.classifier.grid_logits(torch.from_numpy(image), grid, self._features)
        return logits.argmax(dim=1).numpy()
