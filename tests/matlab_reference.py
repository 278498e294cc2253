"""A slow, loop-by-loop transcription of MATLAB's ``imresize`` (bicubic) used as the tests' reference.

It follows ``imresize.m`` (``contributions``: kernel width 4 scaled by 1/scale when shrinking, weights
normalised per output pixel, symmetric boundary ``aux = [1:n, n:-1:1]``) and ``imresizemex``
(uint8 results saturated and rounded half away from zero after each pass), one pixel at a time.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["matlab_imresize"]


def matlab_cubic(x: float) -> float:
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax**3 - 2.5 * ax**2 + 1
    if ax <= 2:
        return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return 0.0


def _resize_line(line: list[float], scale: float, to_uint8: bool) -> list[float]:
    """MATLAB imresize.m ``contributions`` + ``imresizemex`` for one line, one pixel at a time."""
    n_in, n_out = len(line), math.ceil(len(line) * scale)
    width = 4 / scale if scale < 1 else 4
    out = []
    for x in range(1, n_out + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + k for k in range(math.ceil(width) + 2)]
        weights = [scale * matlab_cubic((u - j) * scale) if scale < 1 else matlab_cubic(u - j) for j in taps]
        total = sum(weights)
        value = 0.0
        for j, w in zip(taps, weights, strict=True):
            k = (j - 1) % (2 * n_in)  # aux = [1:n, n:-1:1]
            value += w / total * line[k if k < n_in else 2 * n_in - 1 - k]
        if to_uint8:
            value = math.floor(min(max(value, 0.0), 255.0) + 0.5)  # uint8(): saturate, round half away
        out.append(value)
    return out


def matlab_imresize(image: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(image, scale)`` of a 2-D array; uint8 in -> rounded values out (as float)."""
    to_uint8 = image.dtype == np.uint8
    data = image.astype(np.float64)
    columns = [_resize_line(list(data[:, j]), scale, to_uint8) for j in range(data.shape[1])]
    by_height = np.array(columns).T  # MATLAB resizes height first when both scales are equal
    rows = [_resize_line(list(row), scale, to_uint8) for row in by_height]
    return np.array(rows)
