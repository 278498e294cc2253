"""Branches that take a whole batch of patches per call: PyTorch, ONNX Runtime and OpenVINO (fp32 or int8).

A :data:`BatchRunner` maps float32 ``(N, 3, p, p)`` in [0, 1] to ``(N, 3, s p, s p)`` (not clamped). The
exported and quantized files (:mod:`edgesr.deploy.export`, the ``quantize`` stage) have a batch of 1 and
dynamic H and W; their graphs hold no shape constant tied to the batch, so the batch axis is opened
here: ONNX Runtime gets the same model with a symbolic batch, OpenVINO is reshaped to a static
``(chunk, 3, p, p)`` input and compiled once for it. Every runtime is called on fixed-size chunks of
``chunk`` patches, the last one filled up by repeating its last patch (the filler outputs are
dropped), so a compiled runtime sees one shape and memory stays bounded by the chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import torch
from torch import nn

from edgesr.deploy.runtimes import infer_copy, onnxruntime_session, openvino_config

__all__ = ["BatchRunner", "chunked", "onnxruntime_batch_runner", "openvino_batch_runner", "torch_batch_runner"]

BatchRunner = Callable[[np.ndarray], np.ndarray]
"""float32 (N, 3, p, p) in [0, 1] -> float32 (N, 3, s p, s p), not clamped."""


def chunked(run: BatchRunner, chunk: int) -> BatchRunner:
    """``run`` called on ``chunk`` patches at a time, the last chunk padded with copies of its last patch."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")

    def run_all(patches: np.ndarray) -> np.ndarray:
        outputs = []
        for start in range(0, len(patches), chunk):
            part = patches[start : start + chunk]
            filler = chunk - len(part)
            if filler:
                part = np.concatenate([part, np.repeat(part[-1:], filler, axis=0)])
            outputs.append(run(part)[: chunk - filler])
        return np.concatenate(outputs)

    return run_all


def torch_batch_runner(model: nn.Module, chunk: int) -> BatchRunner:
    """PyTorch eager (eval mode, inference mode) on chunks of ``chunk`` patches."""
    model.eval()

    def run(patches: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(patches))).numpy()

    return chunked(run, chunk)


def _open_batch(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with a symbolic batch axis on its input and output (shape hints of the body dropped)."""
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del proto.graph.value_info[:]  # inferred for a batch of 1; ONNX Runtime re-infers them
    return proto


def onnxruntime_batch_runner(path: Path, threads: int, chunk: int) -> BatchRunner:
    """ONNX Runtime (CPU) on an exported fp32 or QDQ int8 ONNX file, ``chunk`` patches per call."""
    session = onnxruntime_session(_open_batch(onnx.load(path)).SerializeToString(), threads)
    name = session.get_inputs()[0].name
    return chunked(lambda patches: session.run(None, {name: patches})[0], chunk)


def openvino_batch_runner(path: Path, threads: int, chunk: int, patch: int) -> BatchRunner:
    """OpenVINO (CPU) on an IR file, reshaped to a static ``(chunk, 3, patch, patch)`` input and compiled once."""
    core = ov.Core()
    model = core.read_model(path)
    model.reshape({0: [chunk, 3, patch, patch]})
    request = core.compile_model(model, "CPU", config=openvino_config(threads)).create_infer_request()
    return chunked(partial(infer_copy, request), chunk)
