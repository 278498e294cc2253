"""Stage ``export``: every ``deploy.models`` checkpoint to ONNX and OpenVINO IR, with a parity check.

Per model (BatchNorm folded first, paper 004 Sec. 4.4): ``<paths.deploy>/fp32/<name>/model.onnx``
(opset ``deploy.opset``, dynamic H and W, PixelShuffle as DepthToSpace) and ``openvino.xml`` /
``openvino_fp16.xml``. The parity check runs PyTorch, ONNX Runtime and OpenVINO fp32 on a real image
(the first validation image) and stops the stage when an fp32 runtime differs from PyTorch by more
than ``deploy.parity_tolerance``; fp16 IR's difference is reported, not checked. Writes
``metrics/export.json`` and logs the ONNX model (``mlflow.onnx``), the IR files and the differences.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from edgesr.artifacts import deployable_checkpoint, model_dir
from edgesr.config import Params, params_hash
from edgesr.data.images import as_input
from edgesr.data.prepare import data_hash, load_pairs
from edgesr.deploy.export import export_onnx, export_openvino, prepare_for_export
from edgesr.deploy.runtimes import onnxruntime_runner, openvino_runner, torch_runner
from edgesr.files import write_json
from edgesr.tracking import stage_run
from edgesr.train.restore import trained_model

__all__ = ["run"]


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def export_one(params: Params, name: str, lr: np.ndarray, root: Path) -> dict[str, float]:
    """Export ``name`` and return the max |PyTorch - runtime| of each exported file on ``lr`` (uint8 RGB)."""
    cfg = params.deploy
    model = prepare_for_export(trained_model(deployable_checkpoint(params, name, root), params.scale))
    out_dir = model_dir(root / params.paths.deploy, "fp32", name)
    onnx_path = export_onnx(model, out_dir / "model.onnx", cfg.opset)
    ir = export_openvino(onnx_path, out_dir)
    x = as_input(lr)
    reference = torch_runner(model, cfg.threads)(x)
    parity = {
        "onnxruntime_max_abs": _max_abs(onnxruntime_runner(onnx_path, cfg.threads)(x), reference),
        "openvino_max_abs": _max_abs(openvino_runner(ir["fp32"], cfg.threads)(x), reference),
        "openvino_fp16_max_abs": _max_abs(openvino_runner(ir["fp16"], cfg.threads)(x), reference),
    }
    for runtime in ("onnxruntime", "openvino"):
        if parity[f"{runtime}_max_abs"] > cfg.parity_tolerance:
            raise ValueError(
                f"{name}: {runtime} fp32 output differs from PyTorch by {parity[f'{runtime}_max_abs']:.2e} on a "
                f"{lr.shape[1]}x{lr.shape[0]} image, above deploy.parity_tolerance {cfg.parity_tolerance:g}; "
                f"an operator is exported wrongly (inspect {onnx_path}) or raise the tolerance"
            )
    return parity


def run(params: Params, root: Path = Path(".")) -> dict[str, dict[str, float]]:
    """Export every ``deploy.models`` entry; returns ``{model: parity differences}``."""
    prepared = root / params.paths.prepared
    image_name, lr, _ = load_pairs(prepared, "val", params.scale)[0]
    cfg = params.deploy
    with stage_run(
        "export",
        experiment=params.tracking.experiment,
        params={"deploy": cfg.model_dump(mode="json"), "scale": params.scale, "parity_image": image_name},
        params_hash=params_hash(cfg),
        data_hash=data_hash(prepared),
        root=root,
    ) as tracker:
        results = {}
        for name in tqdm(cfg.models, desc="export"):
            results[name] = export_one(params, name, lr, root)
            out_dir = model_dir(root / params.paths.deploy, "fp32", name)
            tracker.log_metrics({f"parity/{name}/{key}": value for key, value in results[name].items()})
            tracker.log_onnx_model(onnx.load(out_dir / "model.onnx"), f"{name}-onnx")
            for path in sorted(out_dir.glob("openvino*")):
                tracker.log_artifact(path, f"openvino/{name}")
        write_json(root / params.paths.metrics / "export.json", results)
    return results
