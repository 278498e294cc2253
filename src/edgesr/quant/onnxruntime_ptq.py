"""int8 post-training quantization of an ONNX model with ONNX Runtime: static QDQ, S8S8, per-channel weights.

Activations and weights are signed int8 (the S8S8 format ONNX Runtime recommends for x86 CPUs with
VNNI); weights per output channel, activations per tensor with min/max calibration ranges (see
:mod:`edgesr.quant.openvino_ptq` for why min/max). Every node ONNX Runtime can quantize is quantized,
first and last convolutions included (paper 003 Sec. 2), unless listed in ``exclude``. The biases are
then corrected on the calibration patches (:mod:`edgesr.quant.bias_correction`), as NNCF does for OpenVINO.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from edgesr.deploy.export import INPUT_NAME
from edgesr.files import atomic_write
from edgesr.quant.bias_correction import correct_biases

__all__ = ["quantize_onnxruntime"]


class _Patches(CalibrationDataReader):
    """Feeds the calibration patches to ONNX Runtime's calibrator one at a time."""

    def __init__(self, patches: list[np.ndarray]) -> None:
        self._patches = iter(patches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        patch = next(self._patches, None)
        return None if patch is None else {INPUT_NAME: patch}


def quantize_onnxruntime(
    fp32_onnx: Path, calibration: list[np.ndarray], out_onnx: Path, exclude: list[str] | None = None
) -> Path:
    """Static QDQ quantization of ``fp32_onnx`` (after ONNX Runtime's shape inference and pre-processing)."""
    with tempfile.TemporaryDirectory(prefix="edgesr-qdq-") as staging:
        prepared = Path(staging) / "prepared.onnx"
        # symbolic shape inference gives up on some dynamic-size graphs (ConvTranspose); ONNX shape inference is enough
        quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)

        def write(temporary: Path) -> None:
            quantize_static(
                str(prepared),
                str(temporary),
                _Patches(calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=exclude or [],
            )
            onnx.save(correct_biases(onnx.load(prepared), onnx.load(temporary), calibration), temporary)

        return atomic_write(out_onnx, write)
