"""Stage ``quantize``: int8 PTQ of every exported model with NNCF (OpenVINO) and ONNX Runtime QDQ, and the report.

Calibration: ``quantize.calibration_patches`` random LR training patches (paper 003 Sec. 4.3 quantizes
after training, on training data). Full int8, first and last layers included, unless
``quantize.ignored_layers`` names layers to keep in float; ``mode: accuracy_control`` runs
``nncf.quantize_with_accuracy_control`` with ``max_drop`` dB PSNR-Y on the validation split (ONNX
Runtime has no such mode and stays full int8). Writes ``<paths.deploy>/int8/<name>/``,
``metrics/quantize.json`` (DVC metric), ``metrics/quantize.md``, ``plots/quantize/int8_drop.{json,png}``
and logs the metrics (``<model>/int8/<runtime>/psnr_drop/<set>``) and the int8 files to MLflow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from edgesr.config import Params, params_hash
from edgesr.data.prepare import available_benchmarks, load_pairs
from edgesr.deploy.export import module_paths
from edgesr.deploy.layout import deployed_file, model_dir
from edgesr.deploy.runtimes import onnxruntime_runner, openvino_runner
from edgesr.files import write_json, write_text
from edgesr.plots import save_int8_drop
from edgesr.quant.calibration import calibration_patches
from edgesr.quant.layers import ignored_nodes, openvino_ignored_scope
from edgesr.quant.onnxruntime_ptq import quantize_onnxruntime
from edgesr.quant.openvino_ptq import quantize_openvino, quantize_openvino_with_accuracy_control
from edgesr.quant.precision import onnxruntime_precisions, openvino_precisions
from edgesr.quant.report import markdown, plot_rows, psnr_by_set
from edgesr.stages import data_hash
from edgesr.tracking import stage_run

__all__ = ["run"]

Pairs = list[tuple[str, np.ndarray, np.ndarray]]


def _quantize(
    params: Params, fp32: Path, out: Path, onnx_nodes: list[str], calibration: list, val_pairs: Pairs, runtime: str
) -> Path:
    """Write the int8 model of ``fp32`` for ``runtime`` to ``out``, ``onnx_nodes`` kept in float."""
    cfg = params.quantize
    if runtime == "onnxruntime":
        return quantize_onnxruntime(fp32, calibration, out, onnx_nodes)
    scope = openvino_ignored_scope(onnx_nodes)
    if cfg.mode == "accuracy_control":
        return quantize_openvino_with_accuracy_control(
            fp32, calibration, val_pairs, params.scale, cfg.max_drop, out, scope
        )
    return quantize_openvino(fp32, calibration, out, scope)


def quantize_one(
    params: Params, name: str, calibration: list, pairs: dict[str, Pairs], val_pairs: Pairs, root: Path
) -> dict[str, dict]:
    """Both int8 models of ``name`` with fp32 and int8 PSNR-Y per set and the executed precisions."""
    deploy_root, threads = root / params.paths.deploy, params.deploy.threads
    proto = onnx.load(deployed_file(deploy_root, name, "onnxruntime", "fp32"))
    modules = module_paths(proto)
    onnx_nodes = ignored_nodes(proto, params.quantize.ignored_layers.get(name, []), name)
    make_runner = {"openvino": openvino_runner, "onnxruntime": onnxruntime_runner}
    inspect = {"openvino": openvino_precisions, "onnxruntime": onnxruntime_precisions}
    results = {}
    for runtime in params.quantize.runtimes:
        fp32 = deployed_file(deploy_root, name, runtime, "fp32")
        out = model_dir(deploy_root, "int8", name) / fp32.name
        int8 = _quantize(params, fp32, out, onnx_nodes, calibration, val_pairs, runtime)
        results[runtime] = {
            "psnr": {
                "fp32": psnr_by_set(make_runner[runtime](fp32, threads), pairs, params.scale),
                "int8": psnr_by_set(make_runner[runtime](int8, threads), pairs, params.scale),
            },
            "executed": inspect[runtime](int8, modules).as_dict(),
        }
    return results


def _xlsr_outputs(params: Params) -> dict[str, str]:
    """Deployed XLSR models and their output activation: the rows of paper 003 Table 2."""
    return {
        name: params.models[name].arch.output
        for name in params.deploy.models
        if name in params.models and params.models[name].arch.type == "xlsr"
    }


def run(params: Params, root: Path = Path(".")) -> dict[str, dict]:
    """Quantize every ``deploy.models`` entry with each runtime of ``quantize.runtimes``; returns the results."""
    prepared = root / params.paths.prepared
    cfg = params.quantize
    sets = available_benchmarks(prepared) or ["val"]
    pairs = {s: load_pairs(prepared, s, params.scale) for s in sets}
    val_pairs = pairs.get("val") or load_pairs(prepared, "val", params.scale)
    calibration = calibration_patches(
        load_pairs(prepared, "train", params.scale),
        params.scale,
        cfg.calibration_patches,
        cfg.calibration_patch,
        cfg.seed,
    )
    metrics_dir, plots_dir = root / params.paths.metrics, root / params.paths.plots / "quantize"
    with stage_run(
        "quantize",
        experiment=params.tracking.experiment,
        params={"quantize": cfg.model_dump(mode="json"), "models": params.deploy.models, "scale": params.scale},
        params_hash=params_hash(cfg),
        data_hash=data_hash(prepared),
        root=root,
    ) as tracker:
        results = {}
        for name in tqdm(params.deploy.models, desc="quantize"):
            results[name] = quantize_one(params, name, calibration, pairs, val_pairs, root)
            for runtime, result in results[name].items():
                fp32, int8 = result["psnr"]["fp32"], result["psnr"]["int8"]
                tracker.log_metrics(
                    {f"{name}/int8/{runtime}/psnr/{s}": int8[s] for s in sets}
                    | {f"{name}/fp32/{runtime}/psnr/{s}": fp32[s] for s in sets}
                    | {f"{name}/int8/{runtime}/psnr_drop/{s}": fp32[s] - int8[s] for s in sets}
                )
            for path in sorted(model_dir(root / params.paths.deploy, "int8", name).iterdir()):
                tracker.log_artifact(path, f"int8/{name}")
        rows = plot_rows(results, sets)
        write_json(metrics_dir / "quantize.json", results)
        write_text(metrics_dir / "quantize.md", markdown(results, sets, _xlsr_outputs(params)))
        write_json(plots_dir / "int8_drop.json", rows)
        picture = save_int8_drop(rows, plots_dir / "int8_drop.png")
        for path in (metrics_dir / "quantize.json", metrics_dir / "quantize.md", picture):
            tracker.log_artifact(path)
    return results
