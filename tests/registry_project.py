"""A tiny project for the registry tests: an untrained ESPCN exported and quantized into a temporary folder.

Real files made by the real export and quantization code (ONNX, OpenVINO IR, NNCF and ONNX Runtime int8)
plus the stage metrics the register stage reads, with numbers each test chooses, so that the gates
have known inputs. Seconds instead of a pipeline run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgesr.artifacts import CHECKS_FILE, file_sha256, model_dir
from edgesr.config import Params, load_params, write_params
from edgesr.data.prepare import MANIFEST_NAME
from edgesr.deploy.export import export_onnx, export_openvino, prepare_for_export
from edgesr.files import write_json
from edgesr.models import build_model, default_model_config
from edgesr.quant.onnxruntime_ptq import quantize_onnxruntime
from edgesr.quant.openvino_ptq import quantize_openvino
from edgesr.quant.overflow import resolve_overflow_fix

ROOT = Path(__file__).resolve().parents[1]
MODEL = "espcn"
SETS = ("Set5", "Set14")
RUNTIMES = ("openvino", "onnxruntime")


def project_params(root: Path, registry: dict | None = None, tile: int = 32) -> Params:
    """The smoke profile with ESPCN as the one deployed and registered model; written to ``root/params.yaml``."""
    data = load_params(ROOT / "params.yaml", "smoke").model_dump(mode="json")
    data["models"] = {MODEL: data["models"][MODEL]}
    data["deploy"] |= {"models": [MODEL], "default_model": MODEL, "tile": tile, "overlap": 8}
    data["quantize"]["ignored_layers"] = {}
    data["registry"] |= {
        "keys_dir": str(root / "keys"),
        "latency_repeats": 2,
        "latency_warmup": 1,
        "profiles": {
            "box-openvino-2t": {"runtime": "openvino", "threads": 2, "latency_budget_ms": 10000, "tile": 32},
            "box-onnxruntime-1t": {"runtime": "onnxruntime", "threads": 1, "latency_budget_ms": 10000, "tile": 32},
        },
    } | (registry or {})
    params = Params.model_validate(data)
    write_params(params, root / "params.yaml")
    return params


def export_tiny_model(params: Params, root: Path, seed: int = 0) -> None:
    """fp32 ONNX + IR and both int8 forms of an untrained ESPCN (weights from ``seed``), with a passing checks.json."""
    torch.manual_seed(seed)
    model = prepare_for_export(build_model(default_model_config(MODEL), params.scale))
    deploy_root = root / params.paths.deploy
    fp32, int8 = model_dir(deploy_root, "fp32", MODEL), model_dir(deploy_root, "int8", MODEL)
    fp32_onnx = export_onnx(model, fp32 / "model.onnx", params.deploy.opset)
    export_openvino(fp32_onnx, fp32)
    rng = np.random.default_rng(seed)
    calibration = [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(8)]
    quantize_onnxruntime(fp32_onnx, calibration, int8 / "model.onnx")
    quantize_openvino(fp32 / "openvino.xml", calibration, int8 / "openvino.xml")
    fix = resolve_overflow_fix()  # the grid both quantizers chose for this CPU
    verdicts = {
        runtime: {"deployable": True, "failures": [], "sha256": file_sha256(int8 / name), "overflow_fix": fix}
        for runtime, name in (("openvino", "openvino.xml"), ("onnxruntime", "model.onnx"))
    }
    write_json(int8 / CHECKS_FILE, verdicts)


def write_stage_metrics(
    params: Params, root: Path, int8_psnr: float = 30.0, drop: float = 0.1, parity: float = 1e-6
) -> None:
    """The metrics files of evaluate, quantize and export (and the prepared manifest) with these numbers."""
    metrics = root / params.paths.metrics
    quantize = {
        runtime: {
            "psnr": {"fp32": {s: int8_psnr + drop for s in SETS}, "int8": {s: int8_psnr for s in SETS}},
            "sets": {s: {"drop": drop, "worst_image": "baby", "worst_drop": drop} for s in SETS},
            "deployable": True,
            "failures": [],
        }
        for runtime in RUNTIMES
    }
    write_json(metrics / "quantize.json", {MODEL: quantize})
    write_json(metrics / "export.json", {MODEL: {f"{runtime}_max_abs": parity for runtime in RUNTIMES}})
    evaluate = {
        "scale": params.scale,
        **{f"psnr_{s}": int8_psnr + drop for s in SETS},
        "latency_ms": 12.5,
        "mult_adds_g": 6.15,
    }
    write_json(metrics / "evaluate.json", {MODEL: evaluate})
    write_json(root / params.paths.prepared / MANIFEST_NAME, {"sets": list(SETS), "seed": 0})
