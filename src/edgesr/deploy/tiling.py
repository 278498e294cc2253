"""Upscaling any image size through overlapping tiles, with memory bounded by the tile, not the image.

Paper 004 (Sec. 1, footnote 2) motivates it: a 12 MP (4000x3000) output, the standard phone photo, does
not go through an SR network in one piece on a device. Each LR tile is cut with ``overlap`` extra
pixels of context on every side, upscaled, and only its core (without the context) is written into
the output. A convolutional network whose receptive field reaches less than ``overlap`` LR pixels
gives exactly the whole-image result (up to float rounding); models with global operations
(squeeze-excitation's average pool, SAM_SR) see only the tile and differ slightly.

All windows have the same size (edge windows are shifted inwards rather than cut), so a runtime sees
one input shape for the whole image. Peak memory: the uint8 input and output plus one window.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from edgesr.deploy.runtimes import Runner, as_image, as_input

__all__ = ["Window", "upscale_tiled", "windows"]


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(core start, core end, window start, window end) along one axis; windows all have one size."""
    size = min(length, tile + 2 * overlap)
    spans = []
    for start in range(0, length, tile):
        end = min(start + tile, length)
        window_start = min(max(start - overlap, 0), length - size)
        spans.append((start, end, window_start, window_start + size))
    return spans


Window = tuple[tuple[int, int, int, int], tuple[int, int, int, int]]
"""Row span and column span, each (core start, core end, window start, window end) in LR pixels."""


def windows(height: int, width: int, tile: int, overlap: int) -> Iterator[Window]:
    """Every tile of an LR image of ``height`` x ``width``, row by row."""
    if tile < 1 or overlap < 0:
        raise ValueError(f"need tile >= 1 and overlap >= 0, got tile={tile}, overlap={overlap}")
    for rows in _spans(height, tile, overlap):
        for cols in _spans(width, tile, overlap):
            yield rows, cols


def upscale_tiled(
    runner: Runner, lr: np.ndarray, scale: int, tile: int, overlap: int, *, desc: str | None = None
) -> np.ndarray:
    """uint8 LR (H, W, 3) -> uint8 SR (scale H, scale W, 3), one overlapping tile at a time (progress bar)."""
    height, width = lr.shape[:2]
    sr = np.empty((scale * height, scale * width, 3), dtype=np.uint8)
    tiles = list(windows(height, width, tile, overlap))
    for (top, bottom, win_top, win_bottom), (left, right, win_left, win_right) in tqdm(
        tiles, desc=desc, unit="tile", disable=len(tiles) == 1 or desc is None, leave=False
    ):
        out = runner(as_input(lr[win_top:win_bottom, win_left:win_right]))
        expected = (scale * (win_bottom - win_top), scale * (win_right - win_left))
        if out.shape[2:] != expected:
            raise ValueError(
                f"the model returned {out.shape[2:]} for a {win_bottom - win_top}x"
                f"{win_right - win_left} tile; expected {expected} at x{scale}"
            )
        rows = slice(scale * (top - win_top), scale * (bottom - win_top))
        cols = slice(scale * (left - win_left), scale * (right - win_left))
        sr[scale * top : scale * bottom, scale * left : scale * right] = as_image(out[:, :, rows, cols])
    return sr
