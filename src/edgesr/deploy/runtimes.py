"""One calling convention for the three runtimes: a :data:`Runner` maps float32 (1, 3, H, W) to (1, 3, sH, sW).

OpenVINO runs with ``INFERENCE_PRECISION_HINT f32``: on CPUs with AMX or AVX-512 BF16 its default
would silently run the float layers in bfloat16, which breaks the 1e-4 fp32 parity and mixes a third
precision into the int8 numbers. Thread counts are fixed per runner, as the latency benchmark needs.
:func:`openvino_config` is the one compile configuration of every OpenVINO model that is run or timed
here (the runners, the latency table's micro-benchmarks and ``benchmarks/``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import openvino as ov
import torch
from torch import nn

from edgesr.data.images import as_image, as_input

__all__ = [
    "Runner",
    "infer_copy",
    "onnxruntime_runner",
    "onnxruntime_session",
    "openvino_config",
    "openvino_runner",
    "torch_runner",
    "upscale_image",
]

Runner = Callable[[np.ndarray], np.ndarray]
"""float32 (1, 3, H, W) in [0, 1] -> float32 (1, 3, sH, sW), not clamped."""


def upscale_image(runner: Runner, lr: np.ndarray) -> np.ndarray:
    """uint8 LR (H, W, 3) -> uint8 SR (sH, sW, 3) in one pass (no tiling)."""
    return as_image(runner(as_input(lr)))


def openvino_config(threads: int, precision: str = "f32", profile: bool = False) -> dict[str, Any]:
    """``compile_model`` properties on the CPU: ``threads`` threads, one stream, ``precision`` explicit.

    ``PERFORMANCE_HINT LATENCY`` (one stream) is also the CPU plugin's default; the precision is not
    (bf16 on AMX / AVX512-BF16 CPUs, f32 elsewhere). ``profile`` turns on the per-node profiler
    (``PERF_COUNT``) that the latency table reads.
    """
    config: dict[str, Any] = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": precision,
    }
    if profile:
        config["PERF_COUNT"] = True
    return config


def openvino_runner(xml: Path | ov.Model, threads: int) -> Runner:
    """Compile an IR file (or an in-memory model) on the CPU with ``threads`` inference threads."""
    compiled = ov.Core().compile_model(xml, "CPU", config=openvino_config(threads))
    return partial(infer_copy, compiled.create_infer_request())


def infer_copy(request: ov.InferRequest, x: np.ndarray) -> np.ndarray:
    """The first output of ``request`` on ``x``, as an array of its own.

    The request reads ``x`` in place and the output is copied once out of the request's buffer
    (``share_inputs`` / ``share_outputs``; by default OpenVINO copies both, and the output used to be copied
    again): the default S subnet ran 21.6 against 24.2 ms at 640x360, XLSR 17.9 against 20.6 (issue 13).
    """
    return request.infer({0: x}, share_inputs=True, share_outputs=True)[0].copy()


def onnxruntime_session(model: Path | bytes, threads: int, optimized_path: Path | None = None) -> ort.InferenceSession:
    """A CPU session on an ONNX file (or a serialized model) with ``threads`` intra-op threads.

    ``optimized_path`` saves the graph ORT really runs.
    """
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the hardware-specific-graph warning of optimized_path is expected
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnxruntime_runner(path: Path, threads: int) -> Runner:
    """ONNX Runtime (CPU execution provider) on an fp32 or QDQ int8 ONNX file."""
    session = onnxruntime_session(path, threads)
    name = session.get_inputs()[0].name
    return lambda lr: session.run(None, {name: lr})[0]


def torch_runner(model: nn.Module, threads: int) -> Runner:
    """PyTorch eager fp32; sets ``torch.set_num_threads(threads)`` for the process."""
    torch.set_num_threads(threads)
    model.eval()

    def run(lr: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(lr)).numpy()

    return run
