"""A model in its deployed form compiled on OpenVINO, fp32 or NNCF int8 (issue 13).

The deployed graph is what runs on the device, so this is what the search's latency model is fitted to
and checked against: the model's export form (:func:`edgesr.deploy.export.prepare_for_export`) exported to
ONNX and OpenVINO IR, for ``int8`` quantized by NNCF exactly as the ``quantize`` stage does (the bicubic skip
of ``quantize.float_modules`` in int8 on exact taps with its ``Add`` in float), compiled with the deployed
models' settings.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from torch import nn

from edgesr.deploy.export import export_onnx, export_openvino, prepare_for_export
from edgesr.deploy.runtimes import Runner, openvino_runner
from edgesr.quant.layers import openvino_ignored_scope, openvino_skip_nodes
from edgesr.quant.openvino_ptq import quantize_openvino

__all__ = ["NetworkPrecision", "network_runner"]

NetworkPrecision = Literal["f32", "int8"]


def network_runner(
    model: nn.Module,
    lr_hw: tuple[int, int],
    *,
    precision: NetworkPrecision = "int8",
    threads: int = 2,
    float_modules: Sequence[str] = (),
    calibration_inputs: int = 2,
) -> Runner:
    """``model``'s deployed form compiled on OpenVINO with ``threads`` threads, for inputs of ``lr_hw``.

    ``int8``: NNCF post-training quantization on ``calibration_inputs`` random inputs of that size (the
    ranges change the scales of the int8 kernels, not which kernels run or how long they take), with the
    modules ``float_modules`` (``quantize.float_modules``) handled as the quantize stage handles them for
    OpenVINO (:func:`edgesr.quant.layers.openvino_skip_nodes`).
    """
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="edgesr-network-") as folder:
        onnx_path = export_onnx(prepare_for_export(model), Path(folder) / "model.onnx")
        xml = export_openvino(onnx_path, Path(folder))["fp32"]
        if precision == "int8":
            floats, exact = openvino_skip_nodes(onnx.load(onnx_path), float_modules)
            calibration = [rng.random((1, 3, *lr_hw), dtype=np.float32) for _ in range(calibration_inputs)]
            scope = openvino_ignored_scope(floats)
            xml = quantize_openvino(xml, calibration, Path(folder) / "int8" / "openvino.xml", scope, exact)
        return openvino_runner(xml, threads)  # compiled in memory: the files may go
