"""What one registered version holds: its model files, its input contract and its metrics.

A version's files (the artifacts of its MLflow logged model)::

    int8/openvino.xml, int8/openvino.bin     NNCF int8 IR                    (quantize)
    int8/model.onnx, int8/checks.json        ONNX Runtime QDQ int8, verdicts (quantize)
    fp32/model.onnx                          fp32 ONNX                       (export)
    contract.json                            scale, layout, value range, tensor names, tiling
    metrics.json                             evaluate row, quantize results, export parity of the model
    bundles/<profile>/...                    signed edge bundles, added on promotion (:mod:`edgesr.registry.bundle`)

A version is identified by :func:`contents_sha256` of its model files and contract (not its metrics:
a rerun of ``evaluate`` measures a new latency for the same model), so a pipeline run whose models did
not change registers nothing new.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import onnx

from edgesr.artifacts import CHECKS_FILE, FILES, file_sha256, model_dir
from edgesr.config import Params
from edgesr.errors import MissingInputError
from edgesr.files import write_json

__all__ = ["CONTRACT", "METRICS", "assemble_version", "contents_sha256", "version_file"]

CONTRACT, METRICS = "contract.json", "metrics.json"
_METRIC_FILES = ("evaluate", "quantize", "export")


def version_file(runtime: str, precision: str) -> str:
    """The path, inside a version, of the file ``runtime`` loads at ``precision`` (``int8/openvino.xml``)."""
    return f"{precision}/{FILES['openvino' if runtime == 'openvino' else 'onnxruntime']}"


def _model_metrics(params: Params, name: str, root: Path) -> dict[str, Any]:
    """The model's entry of ``metrics/{evaluate,quantize,export}.json``."""
    metrics = {}
    for stage in _METRIC_FILES:
        path = root / params.paths.metrics / f"{stage}.json"
        if not path.is_file():
            raise MissingInputError(f"{path} not found: run the {stage} stage first (`dvc repro {stage}`)")
        data = json.loads(path.read_text())
        if name not in data:
            raise MissingInputError(f"{path} has no entry for {name}: add it to deploy.models and rerun {stage}")
        metrics[stage] = data[name]
    return metrics


def _contract(params: Params, fp32_onnx: Path) -> dict[str, Any]:
    """How to feed the model: what ``edgesr upscale`` does, written down for a device."""
    graph = onnx.load(fp32_onnx, load_external_data=False).graph
    return {
        "scale": params.scale,
        "input": graph.input[0].name,
        "output": graph.output[0].name,
        "layout": "NCHW",
        "dtype": "float32",
        "channels": "RGB",
        "value_range": [0.0, 1.0],
        "height_width": "dynamic, >= 2",
        "tile": params.deploy.tile,
        "overlap": params.deploy.overlap,
        "border": params.deploy.border,
    }


def assemble_version(params: Params, name: str, root: Path, folder: Path) -> Path:
    """Copy ``name``'s deployed files into ``folder`` and write its contract and metrics there."""
    deploy_root = root / params.paths.deploy
    int8, fp32 = model_dir(deploy_root, "int8", name), model_dir(deploy_root, "fp32", name)
    sources = {
        "int8/openvino.xml": int8 / "openvino.xml",
        "int8/openvino.bin": int8 / "openvino.bin",
        "int8/model.onnx": int8 / "model.onnx",
        f"int8/{CHECKS_FILE}": int8 / CHECKS_FILE,
        "fp32/model.onnx": fp32 / "model.onnx",
    }
    for target, source in sources.items():
        if not source.is_file():
            stage = "export" if target.startswith("fp32") else "quantize"
            raise MissingInputError(f"{source} not found: run `dvc repro {stage}` (with {name} in deploy.models)")
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / target)
    write_json(folder / CONTRACT, _contract(params, sources["fp32/model.onnx"]))
    write_json(folder / METRICS, _model_metrics(params, name, root))
    return folder


def contents_sha256(folder: Path) -> str:
    """One sha256 over the relative path and sha256 of every file of an assembled version but its metrics."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != METRICS):
        digest.update(f"{path.relative_to(folder).as_posix()} {file_sha256(path)}\n".encode())
    return digest.hexdigest()
