"""Runtime micro-benchmarks: the latency (ms) of one convolution on OpenVINO or ONNX Runtime.

The latency table of the FGNAS search (:mod:`edgesr.search.latency_table`) is made of these
measurements. A single conv with bias runs on a random ``(1, c_in, H, W)`` fp32 input, compiled with
the same settings as the deployed models (:func:`edgesr.deploy.runtimes.openvino_config`,
:func:`edgesr.deploy.runtimes.onnxruntime_session`).

On OpenVINO the result is the execution time that the runtime's own profiler (``PERF_COUNT``) reports
for the conv node with its fused bias, *without* the layout Reorders that the isolated model needs at
its input and output: inside a network the CPU plugin keeps activations in its blocked layout from one
conv to the next, and those two Reorders alone take longer than the conv itself (measured: 3x3 32 -> 32
at 640x360, 12 ms conv vs 29 ms end to end). On ONNX Runtime the result is the wall time of
``session.run``.
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Literal, get_args

import numpy as np
import onnxruntime as ort
import openvino as ov
import openvino.opset13 as ops
from onnx import TensorProto, helper, numpy_helper

from edgesr.deploy.runtimes import onnxruntime_session, openvino_config
from edgesr.deploy.settings import EXPORT_RUNTIMES, ExportRuntime

__all__ = ["InferencePrecision", "PRECISIONS", "check_runtime", "measure_conv_ms", "runtime_version"]

InferencePrecision = Literal["f32", "bf16", "f16", "int8"]
"""OpenVINO's ``INFERENCE_PRECISION_HINT`` of an fp32 graph, or ``int8``: the conv's input and weights
fake-quantized as NNCF quantizes the deployed models (8-bit activations, per-output-channel symmetric
weights), which the CPU plugin runs as an int8 convolution."""
PRECISIONS: tuple[str, ...] = get_args(InferencePrecision)


def check_runtime(runtime: str, precision: str) -> None:
    """Raise unless ``runtime`` can run an fp32 conv at ``precision``."""
    if runtime not in EXPORT_RUNTIMES:
        raise ValueError(f"runtime must be one of {list(EXPORT_RUNTIMES)}, got {runtime!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if runtime == "onnxruntime" and precision != "f32":
        raise ValueError(
            f"onnxruntime's CPU provider runs an fp32 graph in f32 only; got precision {precision!r} "
            "(int8 latency is measured on OpenVINO: runtime openvino)"
        )


def runtime_version(runtime: ExportRuntime) -> str:
    """The installed version of ``runtime``."""
    return ov.get_version() if runtime == "openvino" else ort.__version__


def _conv_weights(kernel: int, c_in: int, c_out: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(c_in * 1000 + c_out)
    weight = (rng.standard_normal((c_out, c_in, kernel, kernel)) / np.sqrt(c_in * kernel**2)).astype(np.float32)
    return weight, rng.standard_normal(c_out).astype(np.float32)


_BORDER_NODES = ("Reorder", "Parameter", "Result", "FakeQuantize")


def _constant(value: float | np.ndarray) -> ov.Node:
    return ops.constant(np.asarray(value, dtype=np.float32))


def _fake_quantized_activations(x: ov.Node) -> ov.Node:
    """``x`` as 256 levels in [0, 1]."""
    return ops.fake_quantize(x, _constant(0.0), _constant(1.0), _constant(0.0), _constant(1.0), 256)


def _fake_quantized(x: ov.Node, weight: np.ndarray) -> tuple[ov.Node, ov.Node]:
    """``x`` as 8-bit activations and ``weight`` as 255 symmetric levels per output channel (NNCF's scheme)."""
    limit = _constant(np.abs(weight).max(axis=(1, 2, 3), keepdims=True))
    negative = ops.negative(limit)
    weights = ops.fake_quantize(ops.constant(weight), negative, limit, negative, limit, 255)
    return _fake_quantized_activations(x), weights


@functools.cache
def _openvino_core() -> ov.Core:
    """One ``ov.Core`` for the hundreds of small models of a table."""
    return ov.Core()


def _openvino_conv_ms(
    kernel: int, c_in: int, c_out: int, lr_hw: tuple[int, int], threads: int, precision: str, repeats: int, warmup: int
) -> float:
    weight, bias = _conv_weights(kernel, c_in, c_out)
    pad = kernel // 2
    x = ops.parameter([1, c_in, *lr_hw], ov.Type.f32, name="x")
    conv_input, conv_weight = x, ops.constant(weight)
    if precision == "int8":
        conv_input, conv_weight = _fake_quantized(x, weight)
    y = ops.convolution(conv_input, conv_weight, [1, 1], [pad, pad], [pad, pad], [1, 1])
    y = ops.add(y, ops.constant(bias.reshape(1, c_out, 1, 1)))
    if precision == "int8":  # inside a network the next conv's input quantizer is fused here: 8-bit output
        y = _fake_quantized_activations(y)
    model = ov.Model([y], [x], "conv")
    hint = "f32" if precision == "int8" else precision  # what is not int8 stays f32, as in the deployed models
    compiled = _openvino_core().compile_model(model, "CPU", openvino_config(threads, hint, profile=True))
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(np.random.default_rng(0).random((1, c_in, *lr_hw), dtype=np.float32)))
    times: list[float] = []
    for index in range(warmup + repeats):
        request.infer()
        if index >= warmup:
            # The conv node with its fused bias; the layout Reorders at the isolated model's borders
            # do not exist between convs inside a network (module docstring).
            # An int8 network requantizes inside the previous node, so the isolated input's FakeQuantize is left out.
            nodes = [p for p in request.get_profiling_info() if p.node_type not in _BORDER_NODES]
            times.append(sum(p.real_time.total_seconds() for p in nodes) * 1e3)
    return statistics.median(times)


def _onnxruntime_conv_ms(
    kernel: int, c_in: int, c_out: int, lr_hw: tuple[int, int], threads: int, repeats: int, warmup: int
) -> float:
    weight, bias = _conv_weights(kernel, c_in, c_out)
    pad = kernel // 2
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[kernel, kernel], pads=[pad] * 4)],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, *lr_hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c_out, *lr_hw])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    session = onnxruntime_session(model.SerializeToString(), threads)
    feed = {"x": np.random.default_rng(0).random((1, c_in, *lr_hw), dtype=np.float32)}
    times: list[float] = []
    for index in range(warmup + repeats):
        start = time.perf_counter()
        session.run(None, feed)
        if index >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure_conv_ms(
    kernel: int,
    c_in: int,
    c_out: int,
    lr_hw: tuple[int, int],
    *,
    runtime: ExportRuntime = "openvino",
    threads: int = 2,
    precision: InferencePrecision = "f32",
    repeats: int = 5,
    warmup: int = 3,
) -> float:
    """Median latency (ms) of one ``kernel x kernel`` conv with bias, ``(1, c_in, H, W) -> (1, c_out, H, W)``.

    OpenVINO: the profiler's time of the conv node (layout Reorders excluded, see the module
    docstring); ONNX Runtime: the wall time of ``session.run``.
    """
    check_runtime(runtime, precision)
    if min(kernel, c_in, c_out, *lr_hw) < 1 or repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError(
            f"need kernel, channels, size, repeats, threads >= 1 and warmup >= 0; got kernel={kernel}, "
            f"c_in={c_in}, c_out={c_out}, lr_hw={lr_hw}, repeats={repeats}, warmup={warmup}, threads={threads}"
        )
    if runtime == "openvino":
        return _openvino_conv_ms(kernel, c_in, c_out, lr_hw, threads, precision, repeats, warmup)
    return _onnxruntime_conv_ms(kernel, c_in, c_out, lr_hw, threads, repeats, warmup)
