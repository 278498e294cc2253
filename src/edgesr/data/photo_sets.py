"""(name, LR, HR) pairs straight from a folder of photographs, for checks that need no prepared copy.

The quantize stage checks int8 models on large photographs (``quantize.photo_sets``, e.g. the 80
SunHays80 images of about 1000x770) besides the prepared benchmark sets. Preparing them would make
every training stage depend on them; reading them here keeps them out of training. LR is made the
way ``prepare`` makes it (DESIGN.md): mod-crop, then MATLAB bicubic ``imresize`` with antialiasing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgesr.data.imresize import imresize, modcrop
from edgesr.data.sources import SkippedImage, folder_images

__all__ = ["folder_pairs"]


def folder_pairs(
    folder: Path, scale: int, limit: int | None = None, skipped: list[SkippedImage] | None = None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Pairs of every image file in ``folder`` (or ``limit`` of them, evenly spaced in sorted order).

    Unreadable files are warned about by name and skipped (:func:`edgesr.data.sources.folder_images`).
    """
    pairs = []
    for name, image in folder_images(Path(folder), skipped, limit):
        hr = modcrop(image, scale)
        pairs.append((name, imresize(hr, 1 / scale), hr))
    return pairs
