"""A fixed interpolation skip (the bicubic phases) run by OpenVINO in int8 without rounding its taps (issue 13).

The bicubic skip of the deploy form (:class:`edgesr.models.bicubic.BicubicPhases`, a 5x5 conv per phase) kept
in float cost the default S subnet 2.6 ms of its 24 ms at 26 GMAC/s; in int8 it is profiled at 1.15 ms
(``benchmarks/int8_skip.py``: S 28.44 -> 26.30 ms side by side). Two things stand in the way, and this module
removes both before NNCF sees the model:

- OpenVINO runs a ``GroupConvolution`` with one input channel per group in f32 even with int8 inputs and
  weights, so the skip becomes a dense conv ``C s^2 x C x 5 x 5``, zero across colours
  (:func:`dense_weights`).
- Rounding the taps moves a flat image's level. NNCF's overflow fix for the first layers
  (``OverflowFix.FIRST_LAYER``, pinned in :mod:`edgesr.quant.openvino_ptq`; the skip reads the model input)
  gives such a conv 7-bit weights: per output channel ``scale = max|w| / 63.5``, integers rounded and clamped
  to [-64, 63]. Taps ``k / K`` with integers ``k`` come out exact when the channel's largest tap is written
  ``63.5 / K`` (it quantizes to 63) and every other ``k / K``: the scale is then ``1 / K`` and the int8 taps are
  ``k`` (:func:`int8_exact_weights`). The ``k`` of a phase are its taps times ``K = round(63 / max tap)``,
  rounded so that they sum to ``K`` (:func:`grid_taps`), so each phase still sums to 1, and with the input's
  quantizer on [0, 1] at 256 levels (``v / 255`` held exactly) a flat image keeps its level.

The skip's taps move by at most ``1 / (2K)`` (about 0.006): 0.01 dB of Set5 PSNR-Y on the default S in fp32;
its int8 drop against the exact fp32 model is 0.027 / 0.014 dB on Set5 / Set14 (0.022 / 0.010 with the skip in
float). The fp32 models keep the exact taps; only the model handed to NNCF changes. The input's quantizer holds
``v / 255`` exactly when the calibration reaches black and white, as the stage's synthetic patches do.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import openvino as ov
import openvino.opset13 as ops

__all__ = ["FIRST_LAYER_MAX_INT", "dense_weights", "grid_taps", "int8_exact_weights", "make_skip_exact"]

FIRST_LAYER_MAX_INT = 63
"""Largest integer of NNCF's 7-bit first-layer weights ([-64, 63]; a channel's max|w| maps to 63.5)."""

_HALF_STEP = 0.5


def grid_taps(taps: np.ndarray) -> tuple[np.ndarray, int]:
    """Integers ``k`` (the shape of ``taps``) and ``K`` with ``k / K`` within ``1 / K`` of ``taps``, ``sum k = K``.

    ``taps`` sum to 1 (an interpolation kernel); the largest one becomes exactly
    :data:`FIRST_LAYER_MAX_INT` and the others are rounded, the non-zero ones rounded furthest moved by one
    until the sum is ``K``.
    """
    flat = np.asarray(taps, dtype=np.float64).ravel()
    peak = int(np.abs(flat).argmax())
    total = round(FIRST_LAYER_MAX_INT / abs(flat[peak]))
    scaled = flat * total
    ints = np.round(scaled)
    ints[peak] = np.sign(flat[peak]) * FIRST_LAYER_MAX_INT
    short = int(total - ints.sum())
    movable = flat != 0  # a zero tap (another colour of a dense skip) stays zero
    movable[peak] = False
    residual = scaled - ints
    order = np.argsort(np.where(movable, -np.sign(short) * residual, np.inf), kind="stable")[: abs(short)]
    ints[order] += np.sign(short)
    return ints.reshape(np.shape(taps)).astype(np.int64), total


def int8_exact_weights(weight: np.ndarray) -> np.ndarray:
    """Float weights ``(O, I, kh, kw)`` that NNCF's first-layer 7-bit quantization turns into ``k / K`` exactly.

    Each output channel of ``weight`` must be an interpolation kernel (its taps sum to 1); its grid taps
    (:func:`grid_taps`) are written ``k / K``, the largest as ``63.5 / K``.

    Raises:
        ValueError: an output channel whose taps do not sum to 1 (not a fixed interpolation).
    """
    sums = weight.reshape(weight.shape[0], -1).sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-5):
        raise ValueError(
            f"an int8-exact skip needs interpolation taps (each output channel summing to 1), got sums "
            f"{np.round(sums, 4).tolist()}; keep this module in float (quantize.float_modules) instead"
        )
    exact = np.empty_like(weight, dtype=np.float32)
    for channel in range(weight.shape[0]):
        ints, total = grid_taps(weight[channel])
        peak = np.abs(ints) == FIRST_LAYER_MAX_INT
        exact[channel] = (ints + peak * np.sign(ints) * _HALF_STEP) / total
    return exact


def dense_weights(weight: np.ndarray) -> np.ndarray:
    """``(G, O/G, I/G, kh, kw)`` grouped conv weights -> the equal dense ``(O, I, kh, kw)`` (zero across groups)."""
    groups, per_out, per_in = weight.shape[:3]
    dense = np.zeros((groups * per_out, groups * per_in, *weight.shape[3:]), dtype=weight.dtype)
    for group in range(groups):
        dense[group * per_out : (group + 1) * per_out, group * per_in : (group + 1) * per_in] = weight[group]
    return dense


def make_skip_exact(model: ov.Model, conv_names: Collection[str]) -> None:
    """Replace each named conv of ``model`` (an IR converted from ONNX: the op keeps the ONNX node's name) by a
    dense ``Convolution`` with :func:`int8_exact_weights`, in place.

    Raises:
        ValueError: a name that is no convolution with constant weights in ``model``.
    """
    found = {op.get_friendly_name(): op for op in model.get_ordered_ops() if op.get_friendly_name() in conv_names}
    missing = sorted(set(conv_names) - set(found))
    if missing:
        raise ValueError(f"no convolution {', '.join(missing)} in the OpenVINO model to run as an int8-exact skip")
    for name, conv in found.items():
        source = conv.input_value(1).get_node()
        if conv.get_type_name() not in ("Convolution", "GroupConvolution") or source.get_type_name() != "Constant":
            raise ValueError(f"{name} is a {conv.get_type_name()} without constant weights, not a fixed skip conv")
        weight = source.get_data()
        if conv.get_type_name() == "GroupConvolution":
            weight = dense_weights(weight)
        attributes = conv.get_attributes()
        dense = ops.convolution(
            conv.input_value(0),
            ops.constant(int8_exact_weights(weight)),
            attributes["strides"],
            attributes["pads_begin"],
            attributes["pads_end"],
            attributes["dilations"],
        )
        dense.set_friendly_name(name)
        conv.output(0).replace(dense.output(0))
    model.validate_nodes_and_infer_types()
