"""int8 post-training quantization of an ONNX model with ONNX Runtime: static QDQ, S8S8, per-channel weights.

Activations and weights are signed int8 (the S8S8 format ONNX Runtime recommends for x86 CPUs with
VNNI); weights per output channel, activations per tensor with min/max calibration ranges (see
:mod:`edgesr.quant.openvino_ptq` for why min/max), asymmetric unless the caller asks for symmetric ranges
(``quantize.onnxruntime_symmetric``: ESPCN's tanh activations pass the int8 limits only so). Every node
ONNX Runtime can quantize is quantized, first and last convolutions included (paper 003 Sec. 2), unless
listed in ``exclude``. The biases are then corrected on the calibration patches
(:mod:`edgesr.quant.bias_correction`), as NNCF does for OpenVINO.

ONNX Runtime also quantizes every convolution's *output* (``QLinearConv`` writes int8). Where that tensor
is the image itself, only rearranged on its way out (``DepthToSpace``, as in ESPCN), its calibrated range
(ESPCN: -0.41 to 1.31) would put an int8 step of 1.7 output levels on the picture, and a flat image
would come back up to one such step off. That tensor's grid is set to the image's own instead: scale
1/255 over [0, 1], so each int8 value is one 8-bit output level and the int8 output rounds exactly where
the final uint8 conversion rounds (the range cannot clip anything the image can show).
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
from edgesr.quant.overflow import OverflowFix, resolve_overflow_fix

__all__ = ["quantize_onnxruntime"]


class _Patches(CalibrationDataReader):
    """Feeds the calibration patches to ONNX Runtime's calibrator one at a time."""

    def __init__(self, patches: list[np.ndarray]) -> None:
        self._patches = iter(patches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        patch = next(self._patches, None)
        return None if patch is None else {INPUT_NAME: patch}


_LAYOUT_OPS = ("DepthToSpace", "Reshape", "Transpose", "Identity")
# [0, 1] onto [-128, 127]: one int8 step per 8-bit level
_INT8_IMAGE_GRID = {"scale": np.array(1 / 255, dtype=np.float32), "zero_point": np.array(-128, dtype=np.int8)}


def image_grid_overrides(model: onnx.ModelProto) -> dict[str, list[dict]]:
    """``TensorQuantOverrides`` giving the image grid to each tensor that reaches a graph output only
    through layout operators, i.e. the output picture before it is rearranged."""
    producers = {output: node for node in model.graph.node for output in node.output}
    overrides = {}
    for graph_output in model.graph.output:
        tensor = graph_output.name
        while (node := producers.get(tensor)) is not None and node.op_type in _LAYOUT_OPS:
            tensor = node.input[0]
        if node is not None and tensor != graph_output.name:
            overrides[tensor] = [dict(_INT8_IMAGE_GRID)]
    return overrides


def quantize_onnxruntime(
    fp32_onnx: Path,
    calibration: list[np.ndarray],
    out_onnx: Path,
    exclude: list[str] | None = None,
    symmetric_activations: bool = False,
    overflow_fix: OverflowFix | None = None,
) -> Path:
    """Static QDQ quantization of ``fp32_onnx`` (after ONNX Runtime's shape inference and pre-processing);
    activation ranges [min, max], or symmetric around zero with ``symmetric_activations``; 7-bit weights
    (``reduce_range``) when ``overflow_fix`` is ``all_layers`` (:mod:`edgesr.quant.overflow`; None: this CPU's
    choice)."""
    reduce_range = (overflow_fix or resolve_overflow_fix()) == "all_layers"
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
                reduce_range=reduce_range,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=exclude or [],
                extra_options={
                    "ActivationSymmetric": symmetric_activations,
                    "TensorQuantOverrides": image_grid_overrides(onnx.load(prepared)),
                },
            )
            onnx.save(correct_biases(onnx.load(prepared), onnx.load(temporary), calibration), temporary)

        return atomic_write(out_onnx, write)
