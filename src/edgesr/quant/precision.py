"""What each runtime really runs in int8: the executed graph, not the quantized file.

A quantized file says what *may* run in int8; the runtime decides. OpenVINO reports the precision of
every layer of its compiled (fused) graph (``runtimePrecision``); ONNX Runtime fuses
DequantizeLinear -> op -> QuantizeLinear into integer kernels (``QLinearConv``, ...) only where it has
one, and runs the rest in float between Q/DQ pairs. Both are read back here after compilation, so
the report names the layers left in float (paper 003 Sec. 3.2: the output layer is where int8 SR
loses most; tanh, PReLU and DepthToSpace are the usual gaps).
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import openvino as ov

from edgesr.deploy.runtimes import onnxruntime_session

__all__ = ["PrecisionReport", "onnxruntime_precisions", "openvino_precisions"]

_INT8 = {"i8", "u8"}
# Layers that compute nothing: graph plumbing, constants, layout and precision conversions.
# FakeQuantize is OpenVINO's quantize step itself (QuantizeLinear's counterpart), not a float layer.
_OPENVINO_PLUMBING = {
    *("Const", "Input", "Parameter", "Output", "Result", "Reorder", "Convert", "Reshape", "FakeQuantize")
}
_ORT_CONVERSIONS = {"QuantizeLinear", "DequantizeLinear"}
_ORT_PLUMBING = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Shape", "Constant", "ReorderInput", "ReorderOutput"}
_ORT_INT8_TYPES = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}


@dataclass
class PrecisionReport:
    """Counts of executed layers by type and precision, and the float ones by module and type.

    Activations that a runtime fuses into the convolution before them (OpenVINO: ReLU, PReLU, tanh,
    clamp as post-ops of an int8 convolution) are not separate layers and are not counted.
    """

    int8: Counter = field(default_factory=Counter)
    float: Counter = field(default_factory=Counter)
    float_layers: Counter = field(default_factory=Counter)

    def add(self, op_type: str, is_int8: bool, name: str) -> None:
        if is_int8:
            self.int8[op_type] += 1
        else:
            self.float[op_type] += 1
            self.float_layers[f"{name} ({op_type})"] += 1

    def as_dict(self) -> dict[str, object]:
        layers = [name if n == 1 else f"{name} x{n}" for name, n in self.float_layers.items()]
        return {"int8": dict(self.int8), "float": dict(self.float), "float_layers": layers}


def _module_of(name: str, modules: dict[str, str]) -> str:
    """A runtime layer name -> the PyTorch module path of the ONNX node it came from, when known."""
    base = re.sub(r"(_token_\d+|_nchwc)+$", "", name.split("/")[0])  # suffixes of ORT's graph rewrites
    base = base.removeprefix("__module.")  # OpenVINO's PyTorch frontend (the QAT model): __module.<path>/aten::...
    return modules.get(base, base)


def openvino_precisions(xml: Path, modules: dict[str, str]) -> PrecisionReport:
    """Precision of every computing layer of the compiled CPU graph of an IR (fused layers count once)."""
    compiled = ov.Core().compile_model(xml, "CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
    report = PrecisionReport()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer_type = info["layerType"].astype(str)
        if layer_type in _OPENVINO_PLUMBING:
            continue
        precision = info["runtimePrecision"].astype(str)
        report.add(layer_type, precision in _INT8, _module_of(op.get_friendly_name(), modules))
    return report


def onnxruntime_precisions(path: Path, modules: dict[str, str]) -> PrecisionReport:
    """Precision of every computing node of the graph ONNX Runtime runs (after its CPU graph optimizations).

    A node is int8 when it is an integer kernel (``QLinear*``, ``*Integer``) or its data input is an int8
    tensor it passes on (``DepthToSpace`` or ``MaxPool`` on int8, between the quantize and dequantize).
    """
    with tempfile.TemporaryDirectory(prefix="edgesr-ort-") as staging:
        optimized = Path(staging) / "optimized.onnx"
        onnxruntime_session(path, threads=1, optimized_path=optimized)
        graph = onnx.load(optimized).graph
    int8_tensors = {t.name for t in graph.initializer if t.data_type in _ORT_INT8_TYPES}
    report = PrecisionReport()
    for node in graph.node:
        integer_kernel = node.op_type.startswith("QLinear") or node.op_type.endswith("Integer")
        int8_input = bool(node.input) and node.input[0] in int8_tensors
        if node.op_type == "QuantizeLinear" or integer_kernel or (int8_input and node.op_type != "DequantizeLinear"):
            int8_tensors.update(node.output)
        if node.op_type in _ORT_CONVERSIONS or node.op_type in _ORT_PLUMBING:
            continue
        report.add(node.op_type, integer_kernel or int8_input, _module_of(node.name, modules))
    return report
