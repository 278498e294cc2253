"""Upscaling any image size through overlapping tiles, with memory bounded by the tile, not the image.

Paper 004 (Sec. 1, footnote 2) motivates it: a 12 MP (4000x3000) output, the standard phone photo, does
not go through an SR network in one piece on a device. Each LR tile is cut with ``overlap`` extra
pixels of context on every side, upscaled, and only its core (without the context) is written into
the output. A convolutional network whose receptive field reaches less than ``overlap`` LR pixels
gives exactly the result of one window over the whole (padded) image, up to float rounding; models
with global operations (squeeze-excitation's average pool, SAM_SR) see only the tile and differ slightly.

All windows have the same size (edge windows are shifted inwards rather than cut), so a runtime sees
one input shape for the whole image. The image borders get context too: the LR image is padded by
``overlap`` pixels (mirrored by default) before tiling and the padding's output is never written.
Peak memory: the uint8 input (twice, padded) and output plus one window.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from edgesr.data.images import as_image, as_input
from edgesr.deploy.runtimes import Runner
from edgesr.deploy.settings import BorderMode
from edgesr.errors import UsageError

__all__ = ["Window", "pad_border", "upscale_tiled", "windows"]


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(core start, core end, window start, window end) along one axis.

    Cores are in image coordinates; windows are in the coordinates of the image padded by ``overlap`` on
    both sides, so every core has ``overlap`` pixels of context on each side, padding at the borders.
    Windows all have one size (the last is shifted inwards rather than cut).
    """
    core = min(length, tile)
    spans = []
    for start in range(0, length, tile):
        window_start = min(start, length - core)
        spans.append((start, min(start + tile, length), window_start, window_start + core + 2 * overlap))
    return spans


Window = tuple[tuple[int, int, int, int], tuple[int, int, int, int]]
"""Row span and column span, each (core start, core end, window start, window end) in LR pixels; windows
index the LR image padded by ``overlap`` pixels on every side."""


def windows(height: int, width: int, tile: int, overlap: int) -> Iterator[Window]:
    """Every tile of an LR image of ``height`` x ``width``, row by row."""
    if tile < 1 or overlap < 0:
        raise UsageError(f"need tile >= 1 and overlap >= 0 (--tile, --overlap), got tile={tile}, overlap={overlap}")
    for rows in _spans(height, tile, overlap):
        for cols in _spans(width, tile, overlap):
            yield rows, cols


def pad_border(lr: np.ndarray, pad: int, mode: BorderMode) -> np.ndarray:
    """``lr`` (H, W, 3) extended by ``pad`` pixels on every side: ``symmetric`` mirrors with the edge pixel
    repeated (MATLAB's rule, as the bicubic skip pads) and ``edge`` repeats the edge pixel."""
    if pad == 0:
        return lr
    return np.pad(lr, ((pad, pad), (pad, pad), (0, 0)), mode=mode)


def upscale_tiled(
    runner: Runner,
    lr: np.ndarray,
    scale: int,
    tile: int,
    overlap: int,
    *,
    border: BorderMode = "symmetric",
    desc: str | None = None,
) -> np.ndarray:
    """uint8 LR (H, W, 3) -> uint8 SR (scale H, scale W, 3), one overlapping tile at a time (progress bar).

    The image is first extended by ``overlap`` pixels of ``border`` padding, so a border pixel gets the
    context of an interior one instead of the network's zero padding (which darkens a white image's
    border: issue 9); a tile as large as the image gives the whole-image result of the padded image.
    """
    height, width = lr.shape[:2]
    padded = pad_border(lr, overlap, border)
    sr = np.empty((scale * height, scale * width, 3), dtype=np.uint8)
    tiles = list(windows(height, width, tile, overlap))
    for (top, bottom, win_top, win_bottom), (left, right, win_left, win_right) in tqdm(
        tiles, desc=desc, unit="tile", disable=len(tiles) == 1 or desc is None, leave=False
    ):
        out = runner(as_input(padded[win_top:win_bottom, win_left:win_right]))
        expected = (scale * (win_bottom - win_top), scale * (win_right - win_left))
        if out.shape[2:] != expected:
            raise ValueError(
                f"the model returned {out.shape[2:]} for a {win_bottom - win_top}x"
                f"{win_right - win_left} tile; expected {expected} at x{scale}"
            )
        rows = slice(scale * (top + overlap - win_top), scale * (bottom + overlap - win_top))
        cols = slice(scale * (left + overlap - win_left), scale * (right + overlap - win_left))
        sr[scale * top : scale * bottom, scale * left : scale * right] = as_image(out[:, :, rows, cols])
    return sr
