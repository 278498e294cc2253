"""Empirical bias correction of an ONNX Runtime QDQ model (Nagel et al., "Data-Free Quantization", ICCV 2019, Sec. 4.2).

int8 rounding shifts the mean of a convolution's output: for a flat image the rounding errors do not
average out, so the shift is the level error itself. NNCF corrects it for OpenVINO (full
``BiasCorrection``); ONNX Runtime's static quantizer has no such step. Here, layer by layer in graph
order, the mean of every output channel of each convolution over the calibration patches is measured
in the fp32 model and in the int8 model (with the corrections of the layers before it already in), and
the difference is taken out of that convolution's bias:

    b_c <- b_c - (E[y_c^int8] - E[y_c^fp32])

A quantized bias is int32 with scale ``s_c`` (input scale x weight scale), so it moves by
``round(difference / s_c)`` steps; a float bias (a layer kept in float) moves by the difference.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgesr.deploy.export import INPUT_NAME
from edgesr.deploy.runtimes import onnxruntime_session

__all__ = ["correct_biases"]

_CONVS = ("Conv", "ConvTranspose")


def _channel_means(model: onnx.ModelProto, names: list[str], patches: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-channel mean of the tensors ``names`` over ``patches`` (each (1, C, H, W))."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in names)
    session = onnxruntime_session(probe.SerializeToString(), threads=2)
    sums = {name: np.zeros(0) for name in names}
    for patch in patches:
        for name, value in zip(names, session.run(names, {INPUT_NAME: patch}), strict=True):
            means = value.astype(np.float64).mean(axis=(0, 2, 3))
            sums[name] = means if sums[name].size == 0 else sums[name] + means
    return {name: total / len(patches) for name, total in sums.items()}


def _bias_of(model: onnx.ModelProto, conv: onnx.NodeProto) -> tuple[onnx.TensorProto, onnx.TensorProto | None] | None:
    """The bias initializer of ``conv`` and, when it is int32-quantized, its scale initializer; None if no bias."""
    if len(conv.input) < 3 or not conv.input[2]:
        return None
    initializers = {init.name: init for init in model.graph.initializer}
    if conv.input[2] in initializers:
        return initializers[conv.input[2]], None
    producer = next(node for node in model.graph.node if conv.input[2] in node.output)
    if producer.op_type != "DequantizeLinear":
        return None
    return initializers[producer.input[0]], initializers[producer.input[1]]


def correct_biases(fp32: onnx.ModelProto, int8: onnx.ModelProto, patches: list[np.ndarray]) -> onnx.ModelProto:
    """``int8`` with every convolution's bias corrected so its output means match ``fp32`` on ``patches``.

    Convolutions are matched by node name, which ONNX Runtime's QDQ quantizer keeps (it renames output
    tensors: a Conv + Relu pair becomes one Conv writing the Relu's tensor, a graph output gets a new name).
    """
    corrected = onnx.ModelProto()
    corrected.CopyFrom(int8)
    fp32_outputs = {node.name: node.output[0] for node in fp32.graph.node if node.op_type in _CONVS}
    convs = [node for node in corrected.graph.node if node.op_type in _CONVS and node.name in fp32_outputs]
    targets = _channel_means(fp32, [fp32_outputs[conv.name] for conv in convs], patches)
    for conv in convs:
        bias = _bias_of(corrected, conv)
        if bias is None:
            continue
        name = conv.output[0]
        shift = _channel_means(corrected, [name], patches)[name] - targets[fp32_outputs[conv.name]]
        values, scale = numpy_helper.to_array(bias[0]), bias[1]
        if scale is None:
            new = (values - shift).astype(values.dtype)
        else:
            steps = np.rint(shift / numpy_helper.to_array(scale).astype(np.float64))
            new = (values.astype(np.int64) - steps.astype(np.int64)).clip(-(2**31), 2**31 - 1).astype(values.dtype)
        bias[0].CopyFrom(numpy_helper.from_array(new, bias[0].name))
    return corrected
