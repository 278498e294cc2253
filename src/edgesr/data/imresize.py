"""MATLAB ``imresize`` (bicubic, antialiased) in NumPy, plus ``modcrop``.

This reproduces MATLAB's ``imresize(A, scale)`` with its default ``'bicubic'`` method, the recipe that
every SR benchmark uses to make LR images (and BasicSR's ``basicsr/utils/matlab_functions.py``):

- Cubic convolution kernel with a = -0.5 (Keys 1981), support [-2, 2].
- When downscaling (``scale < 1``) the kernel is stretched by ``1 / scale`` and scaled by ``scale``,
  i.e. antialiasing is on, as in MATLAB's default.
- Output pixel ``x`` (1-based) samples input coordinate ``u = x / scale + 0.5 * (1 - 1 / scale)``;
  each output row of weights is normalised to sum to 1.
- Out-of-range taps use MATLAB's symmetric padding (``aux = [1:n, n:-1:1]``, the edge pixel repeated).
- The dimension with the smaller scale is resized first (MATLAB sorts the scales; equal scales keep
  height first).
- For uint8 input MATLAB's ``imresizemex`` returns uint8 from *each* 1-D pass, so the intermediate
  result is rounded too; rounding is half away from zero and saturating, like MATLAB's ``uint8()``.
  Float input is computed and returned in float64 without clipping.

Each 1-D pass is a sparse banded (out x in) weight matrix applied with one matrix product, so the cost
is linear in the number of pixels and memory stays bounded for large images.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

__all__ = ["cubic_kernel", "imresize", "modcrop", "resize_weights"]

_KERNEL_WIDTH = 4.0


def cubic_kernel(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def resize_weights(in_length: int, out_length: int, scale: float) -> sp.csr_matrix:
    """Sparse (out_length x in_length) matrix of one 1-D MATLAB bicubic resize pass.

    Mirrors MATLAB's ``contributions``: the same kernel, coordinates, normalisation and symmetric
    boundary; taps that fall outside the image are folded back onto the pixels they mirror.
    """
    antialias = scale < 1
    kernel_width = _KERNEL_WIDTH / scale if antialias else _KERNEL_WIDTH
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * cubic_kernel(distance * scale) if antialias else cubic_kernel(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # MATLAB: aux = [1:n, n:-1:1]; indices = aux(mod(indices - 1, 2n) + 1), here 0-based.
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    columns = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    rows = np.repeat(np.arange(out_length), taps)
    # COO -> CSR sums the weights of taps that mirror onto the same input pixel.
    return sp.coo_matrix((weights.ravel(), (rows, columns.ravel())), shape=(out_length, in_length)).tocsr()


def _round_like_uint8(values: np.ndarray) -> np.ndarray:
    """MATLAB's ``uint8()`` values (kept in float64): saturate to [0, 255], round half away from zero."""
    clipped = np.clip(values, 0.0, 255.0)
    floor = np.floor(clipped)
    # ``clipped - floor`` is exact in float64, so ties are detected exactly (np.round would go to even).
    return floor + (clipped - floor >= 0.5)


def _resize_axis(image: np.ndarray, weights: sp.csr_matrix, axis: int) -> np.ndarray:
    moved = np.moveaxis(image, axis, 0)
    flat = moved.reshape(moved.shape[0], -1)
    out = np.asarray(weights @ flat).reshape((weights.shape[0],) + moved.shape[1:])
    return np.moveaxis(out, 0, axis)


def imresize(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) image by ``scale`` exactly as MATLAB's ``imresize(image, scale)``.

    The output is ``(ceil(H * scale), ceil(W * scale))``. uint8 input gives uint8 output (rounded and
    saturated like MATLAB, after each pass); float input gives float64 output, unclipped.
    """
    if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got shape {image.shape}")
    if image.dtype == np.uint8:
        is_uint8 = True
    elif np.issubdtype(image.dtype, np.floating):
        is_uint8 = False
    else:
        raise TypeError(f"imresize takes uint8 or float images, got dtype {image.dtype}")
    in_h, in_w = image.shape[:2]
    if in_h == 0 or in_w == 0:
        raise ValueError(f"cannot resize an empty image of shape {image.shape}")
    out_h, out_w = math.ceil(in_h * scale), math.ceil(in_w * scale)

    result = image.astype(np.float64)
    # Both axes share one scale, so MATLAB's order (smaller scale first, stable) is height, then width.
    for axis, in_length, out_length in ((0, in_h, out_h), (1, in_w, out_w)):
        result = _resize_axis(result, resize_weights(in_length, out_length, scale), axis)
        if is_uint8:
            # MATLAB's imresizemex returns the input class from every pass: round between passes too.
            result = _round_like_uint8(result)
    return result.astype(np.uint8) if is_uint8 else result


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom and right edges so that height and width are multiples of ``scale`` (BasicSR)."""
    if not (isinstance(scale, int | np.integer) and scale >= 1):
        raise ValueError(f"modcrop needs an integer scale >= 1, got {scale!r}")
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an image of shape (H, W) or (H, W, C), got shape {image.shape}")
    height, width = image.shape[:2]
    return image[: height - height % scale, : width - width % scale]
