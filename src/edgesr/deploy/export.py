"""Export a trained model to ONNX and OpenVINO IR, BatchNorm folded first (paper 004 Sec. 4.4, Table 4).

ONNX comes from the ``torch.export`` based exporter (the default of ``torch.onnx.export``) with dynamic
height and width, so one file serves every image and tile size; ``nn.PixelShuffle`` becomes ONNX
``DepthToSpace`` (CRD mode). Nothing in here knows a particular architecture: any model with the
uniform surface ((1, 3, H, W) float in [0, 1] -> (1, 3, sH, sW)) goes through the same path, including
gathers, concatenations, PReLU and tanh.

Each ONNX node keeps one piece of the exporter's metadata, the PyTorch module path it came from
(``conv_last``, ``body.0.conv_group``), which is how ``quantize.ignored_layers`` and the precision report
name layers; the rest (stack traces with absolute paths) is dropped so the file depends only on the
weights. OpenVINO IR is converted from that ONNX file, in fp32 and fp16-compressed weights.
"""

from __future__ import annotations

import ast
import os
import tempfile
from pathlib import Path

import onnx
import openvino as ov
import torch
from torch import nn

from edgesr.deploy.fgnas_form import deploy_form
from edgesr.files import atomic_write
from edgesr.models import FGNAS, fold_batchnorm

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "export_onnx",
    "export_openvino",
    "module_paths",
    "prepare_for_export",
    "save_openvino",
]

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"
_SCOPES_KEY = "pkg.torch.onnx.name_scopes"
# An example input with unequal, non-trivial sides so that torch.export keeps H and W symbolic and apart.
_EXAMPLE_HW = (24, 32)


def prepare_for_export(model: nn.Module) -> nn.Module:
    """Eval-mode copy with every Conv -> BatchNorm pair folded into one conv (paper 004 Sec. 4.4); an
    FGNAS subnet in its deploy form (:func:`edgesr.deploy.fgnas_form.deploy_form`: no channel Gather /
    Pad, no masked activation branches, one pixel shuffle)."""
    folded = fold_batchnorm(model)
    return deploy_form(folded) if isinstance(folded, FGNAS) else folded


def _keep_module_paths(proto: onnx.ModelProto) -> None:
    """Replace each node's metadata by its PyTorch module path (the innermost named scope)."""
    for node in proto.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == _SCOPES_KEY), None)
        del node.metadata_props[:]
        if scopes is None:
            continue
        # ['', 'conv_first', 'conv_first.0', 'conv2d']: the last entry names the op, the one before the module
        names = [name for name in ast.literal_eval(scopes)[:-1] if name]
        if names:
            node.metadata_props.add(key="module", value=names[-1])


def module_paths(proto: onnx.ModelProto) -> dict[str, str]:
    """ONNX node name -> PyTorch module path, for nodes written by :func:`export_onnx`."""
    return {node.name: prop.value for node in proto.graph.node for prop in node.metadata_props if prop.key == "module"}


def export_onnx(model: nn.Module, path: Path, opset: int = 18) -> Path:
    """Write ``model`` (already in export form) as ONNX with input ``lr`` (1, 3, H, W) and output ``sr``.

    H and W are dynamic (any size >= 2). Raises ``ValueError`` when the exporter cannot trace the model.
    """
    if opset < 17:
        raise ValueError(f"ONNX opset {opset} is too old: DepthToSpace and dynamic shapes need 17 or newer")
    height, width = (torch.export.Dim(name, min=2) for name in ("height", "width"))
    example = torch.rand(1, int(getattr(model, "num_in_ch", 3)), *_EXAMPLE_HW)
    try:
        program = torch.onnx.export(
            model.eval(),
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({2: height, 3: width},),
            external_data=False,
            verbose=False,
        )
    except Exception as err:  # the exporter raises many types; the user needs the model name and the cause
        raise ValueError(f"ONNX export of {type(model).__name__} failed: {err}") from err
    assert program is not None, "dynamo=True returns an ONNXProgram"
    proto = program.model_proto
    _keep_module_paths(proto)
    onnx.checker.check_model(proto)
    return atomic_write(path, lambda temporary: onnx.save_model(proto, str(temporary)))


def save_openvino(model: ov.Model, xml_path: Path, compress_to_fp16: bool) -> Path:
    """``openvino.save_model`` into a temporary folder, then rename ``.bin`` and ``.xml`` over the targets.

    The ``.bin`` goes first, so an ``.xml`` that exists always has its weights beside it.
    """
    xml_path = Path(xml_path)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=xml_path.parent, prefix=f".{xml_path.stem}.") as staging:
        staged = Path(staging) / xml_path.name
        ov.save_model(model, staged, compress_to_fp16=compress_to_fp16)
        for suffix in (".bin", ".xml"):
            os.chmod(staged.with_suffix(suffix), 0o644)
            os.replace(staged.with_suffix(suffix), xml_path.with_suffix(suffix))
    return xml_path


def export_openvino(onnx_path: Path, out_dir: Path) -> dict[str, Path]:
    """Convert an ONNX file to OpenVINO IR: ``openvino.xml`` (fp32) and ``openvino_fp16.xml`` (fp16 weights)."""
    model = ov.convert_model(onnx_path)
    return {
        "fp32": save_openvino(model, out_dir / "openvino.xml", compress_to_fp16=False),
        "fp16": save_openvino(model, out_dir / "openvino_fp16.xml", compress_to_fp16=True),
    }
