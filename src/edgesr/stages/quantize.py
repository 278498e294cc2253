"""Stage ``quantize``: int8 PTQ of every exported model with NNCF (OpenVINO) and ONNX Runtime QDQ, verified.

Calibration (:mod:`edgesr.quant.calibration`): ``quantize.calibration_patches`` LR patches that cover
the input domain: training crops (paper 003 Sec. 4.3 quantizes on training data), the same crops
re-exposed bright and dark, and synthetic flat, edge, ramp and checkerboard patches in extreme colours.
Full int8, first and last layers included, unless ``quantize.ignored_layers`` names layers to keep in
float; ``quantize.float_modules`` names the fixed bicubic skip of the models that have one: ONNX Runtime keeps it
in float with the ``Add`` that sums it into the output (:func:`edgesr.quant.layers.float_module_nodes`), OpenVINO
runs a one-conv skip in int8 on taps NNCF keeps exactly and only its ``Add`` in float
(:func:`edgesr.quant.layers.openvino_skip_nodes`, :mod:`edgesr.quant.exact_skip`).
ONNX Runtime's activation ranges are asymmetric except for the models in ``quantize.onnxruntime_symmetric``
(NNCF's are symmetric). ``mode: accuracy_control`` runs ``nncf.quantize_with_accuracy_control`` with
``max_drop`` dB PSNR-Y on the validation split; ``mode: qat`` fine-tunes the OpenVINO int8 model from the
model's checkpoint with its quantizers in the graph (:mod:`edgesr.quant.qat`). ONNX Runtime has neither mode
and stays full int8 PTQ.

Every int8 model is verified against its own fp32 form through ``edgesr upscale``'s path (tiling and
border padding) on every benchmark set (or the validation split), the ``quantize.photo_sets`` that
exist here, and the stress suite (:mod:`edgesr.data.stress`); ``quantize.limits`` decides whether it
is deployable (:mod:`edgesr.quant.checks`). Writes ``<paths.deploy>/int8/<name>/`` (with
``checks.json``, which ``edgesr upscale`` reads), ``metrics/quantize.json`` (DVC metric),
``metrics/quantize_detail.json`` (per image), ``metrics/quantize.md``, ``plots/quantize/int8_drop.{json,png}``,
in ``mode: qat`` the fine-tuning runs ``<paths.qat>/<name>/`` (kept for resuming) and their curves
``plots/quantize/qat/<name>.csv``, and logs the metrics (``<model>/int8/<runtime>/psnr_drop/<set>``,
``.../deployable``) and files to MLflow.
The stage fails, after writing the report, when ``deploy.default_model`` is not deployable.
"""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import onnx
from tqdm import tqdm

from edgesr.artifacts import CHECKS_FILE, deployable_checkpoint, deployed_file, file_sha256, model_dir
from edgesr.config import Params, params_hash
from edgesr.data.photo_sets import folder_pairs
from edgesr.data.prepare import available_benchmarks, data_hash, load_pairs
from edgesr.data.stress import StressImage, stress_images
from edgesr.deploy.export import module_paths, prepare_for_export
from edgesr.deploy.runtimes import onnxruntime_runner, openvino_runner
from edgesr.deploy.tiling import upscale_tiled
from edgesr.errors import UserError
from edgesr.files import write_json, write_text
from edgesr.plots import save_int8_drop
from edgesr.quant.calibration import calibration_patches
from edgesr.quant.layers import float_module_nodes, ignored_nodes, openvino_ignored_scope, openvino_skip_nodes
from edgesr.quant.onnxruntime_ptq import quantize_onnxruntime
from edgesr.quant.openvino_ptq import quantize_openvino, quantize_openvino_with_accuracy_control
from edgesr.quant.overflow import OverflowFix, resolve_overflow_fix, weight_bits
from edgesr.quant.precision import onnxruntime_precisions, openvino_precisions
from edgesr.quant.qat import DISTILL_METRIC, quantize_openvino_qat
from edgesr.quant.report import markdown, plot_rows
from edgesr.quant.verify import Pairs, Upscale, verify_int8
from edgesr.tracker import PrefixedTracker, Tracker
from edgesr.tracking import stage_run
from edgesr.train.restore import trained_model
from edgesr.train.run import history_csv

__all__ = ["DefaultModelNotDeployableError", "run", "stage_calibration"]


def _quantize(
    params: Params,
    fp32: Path,
    out: Path,
    proto: onnx.ModelProto,
    layers: list[str],
    calibration: list,
    val_pairs: Pairs,
    runtime: str,
    symmetric: bool,
    overflow_fix: OverflowFix,
) -> Path:
    """Write the int8 model of ``fp32`` for ``runtime`` to ``out``: the ONNX nodes ``layers`` in float, and
    ``quantize.float_modules`` as that runtime keeps them (ONNX Runtime: in float with their ``Add``, activations
    ``symmetric`` or asymmetric; OpenVINO: a one-conv skip in int8 on exact taps, its ``Add`` in float), weights on
    the grid of ``overflow_fix``."""
    cfg = params.quantize
    if runtime == "onnxruntime":
        floats = layers + float_module_nodes(proto, cfg.float_modules)
        return quantize_onnxruntime(fp32, calibration, out, floats, symmetric, overflow_fix)
    skip_floats, exact = openvino_skip_nodes(proto, cfg.float_modules)
    exact = [conv for conv in exact if conv not in layers]  # a skip named in ignored_layers stays float, exact taps
    scope = openvino_ignored_scope(layers + skip_floats)
    if cfg.mode == "accuracy_control":
        return quantize_openvino_with_accuracy_control(
            fp32, calibration, val_pairs, params.scale, cfg.max_drop, out, scope, exact, overflow_fix
        )
    return quantize_openvino(fp32, calibration, out, scope, exact, overflow_fix)


class DefaultModelNotDeployableError(UserError, ValueError):
    """The model ``edgesr upscale`` runs by default failed its int8 checks: the stage must not ship it."""


def _fine_tuned_int8(
    params: Params,
    name: str,
    calibration: list,
    train_pairs: Pairs,
    val_pairs: Pairs,
    out: Path,
    root: Path,
    tracker: Tracker,
    overflow_fix: OverflowFix,
) -> Path:
    """``mode: qat``: the OpenVINO int8 model of ``name`` fine-tuned from its checkpoint on ``train_pairs``
    (:mod:`edgesr.quant.qat`) in ``<paths.qat>/<name>``, validated on ``val_pairs``, its curve written to
    ``plots/quantize/qat/<name>.csv``."""
    cfg = params.quantize
    model = prepare_for_export(trained_model(deployable_checkpoint(params, name, root), params.scale))
    result = quantize_openvino_qat(
        model,
        calibration,
        train_pairs,
        val_pairs,
        params.scale,
        cfg.qat,
        out,
        root / params.paths.qat / name,
        cfg.float_modules,
        PrefixedTracker(tracker, f"{name}/qat"),
        overflow_fix,
    )
    curve = history_csv(result.history, ("loss", DISTILL_METRIC, "val_psnr"))
    write_text(_qat_curves(params, root) / f"{name}.csv", curve)
    return result.xml


def _qat_curves(params: Params, root: Path) -> Path:
    """The folder of mode qat's fine-tuning curves (a DVC plot folder, empty outside mode qat)."""
    return root / params.paths.plots / "quantize" / "qat"


def _keep_qat_runs(params: Params, root: Path) -> None:
    """``<paths.qat>`` (kept by DVC) holds only the fine-tuning runs this stage may resume: none outside mode qat,
    none of a model no longer deployed; the curves' folder is made anew."""
    runs = root / params.paths.qat
    fine_tunes = params.quantize.mode == "qat" and "openvino" in params.quantize.runtimes
    keep = set(params.deploy.models) if fine_tunes else set()
    for folder in runs.iterdir() if runs.is_dir() else []:
        if folder.name in keep:
            continue
        if folder.is_dir():
            shutil.rmtree(folder)
        else:
            folder.unlink()
    runs.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(_qat_curves(params, root), ignore_errors=True)
    _qat_curves(params, root).mkdir(parents=True)


def quantize_one(
    params: Params,
    name: str,
    calibration: list,
    sets: dict[str, Pairs],
    val_pairs: Pairs,
    stress: list[StressImage],
    upscale: Upscale,
    root: Path,
    train_pairs: Pairs,
    tracker: Tracker,
) -> dict[str, dict]:
    """Both int8 models of ``name``, each verified against its fp32 form, with the executed precisions.

    ``train_pairs``: the training split, which ``mode: qat`` fine-tunes the OpenVINO model on (validated on
    ``val_pairs``, recorded by ``tracker``)."""
    deploy_root, threads = root / params.paths.deploy, params.deploy.threads
    proto = onnx.load(deployed_file(deploy_root, name, "onnxruntime", "fp32"))
    modules = module_paths(proto)
    layers = ignored_nodes(proto, params.quantize.ignored_layers.get(name, []), name)
    make_runner = {"openvino": openvino_runner, "onnxruntime": onnxruntime_runner}
    inspect = {"openvino": openvino_precisions, "onnxruntime": onnxruntime_precisions}
    checks = model_dir(deploy_root, "int8", name) / CHECKS_FILE
    checks.unlink(missing_ok=True)  # no verdict may outlive the model it was measured on
    overflow_fix = resolve_overflow_fix(params.quantize.overflow_fix)
    results: dict[str, dict] = {}
    for runtime in params.quantize.runtimes:
        fp32 = deployed_file(deploy_root, name, runtime, "fp32")
        out = model_dir(deploy_root, "int8", name) / fp32.name
        symmetric = runtime == "openvino" or name in params.quantize.onnxruntime_symmetric
        if runtime == "openvino" and params.quantize.mode == "qat":
            int8 = _fine_tuned_int8(params, name, calibration, train_pairs, val_pairs, out, root, tracker, overflow_fix)
        else:
            int8 = _quantize(params, fp32, out, proto, layers, calibration, val_pairs, runtime, symmetric, overflow_fix)
        results[runtime] = verify_int8(
            make_runner[runtime](fp32, threads),
            make_runner[runtime](int8, threads),
            sets,
            stress,
            params.scale,
            upscale,
            params.quantize.limits,
        )
        results[runtime]["executed"] = inspect[runtime](int8, modules).as_dict()
        results[runtime]["executed"]["activations"] = "symmetric" if symmetric else "asymmetric"
        results[runtime]["executed"]["weights"] = weight_bits(runtime, overflow_fix)
        results[runtime]["sha256"] = file_sha256(int8)
    verdicts = {
        runtime: {k: r[k] for k in ("deployable", "failures", "sha256")} | {"overflow_fix": overflow_fix}
        for runtime, r in results.items()
    }
    write_json(checks, verdicts)
    return results


def _xlsr_outputs(params: Params) -> dict[str, str]:
    """Deployed XLSR models and their output activation: the rows of paper 003 Table 2."""
    archs = {name: params.models[name].arch for name in params.deploy.models if name in params.models}
    return {name: arch.output for name, arch in archs.items() if arch.type == "xlsr"}


def _photo_sets(params: Params, root: Path) -> dict[str, Pairs]:
    """The ``quantize.photo_sets`` whose folders exist here; a missing one is skipped with a message."""
    sets = {}
    for name, folder in params.quantize.photo_sets.items():
        path = root / folder
        if not path.is_dir():
            tqdm.write(f"quantize: photo set {name} skipped, folder {path} not found")
            continue
        sets[name] = folder_pairs(path, params.scale, params.quantize.photo_set_images)
    return sets


_DETAIL = ("images", "stress")


def _metrics(results: dict) -> dict:
    """quantize.json: everything but the per-image detail (which goes to quantize_detail.json)."""
    return {
        model: {runtime: {k: v for k, v in r.items() if k not in _DETAIL} for runtime, r in runtimes.items()}
        for model, runtimes in results.items()
    }


def _log(tracker, name: str, runtime: str, result: dict, sets: list[str]) -> None:
    fp32, int8 = result["psnr"]["fp32"], result["psnr"]["int8"]
    worst = result["stress_summary"]
    tracker.log_metrics(
        {f"{name}/int8/{runtime}/psnr/{s}": int8[s] for s in sets}
        | {f"{name}/fp32/{runtime}/psnr/{s}": fp32[s] for s in sets}
        | {f"{name}/int8/{runtime}/psnr_drop/{s}": result["sets"][s]["drop"] for s in sets}
        | {f"{name}/int8/{runtime}/worst_drop/{s}": result["sets"][s]["worst_drop"] for s in sets}
        | {f"{name}/int8/{runtime}/stress_min_psnr": worst["psnr"]}
        | {f"{name}/int8/{runtime}/stress_max_abs": worst["max_abs"]}
        | {f"{name}/int8/{runtime}/deployable": float(result["deployable"])}
    )
    tracker.set_tags({f"int8_deployable.{name}.{runtime}": "yes" if result["deployable"] else "no"})


def stage_calibration(params: Params, prepared: Path, train_pairs: Pairs | None = None) -> list:
    """The calibration patches the stage quantizes every model on (see the module docstring), drawn from
    ``train_pairs`` (the training split, loaded from ``prepared`` when not given)."""
    cfg = params.quantize
    return calibration_patches(
        train_pairs or load_pairs(prepared, "train", params.scale),
        params.scale,
        cfg.calibration_patches,
        cfg.calibration_patch,
        cfg.seed,
        cfg.exposed_fraction,
        cfg.synthetic_fraction,
    )


def run(params: Params, root: Path = Path(".")) -> dict[str, dict]:
    """Quantize and verify every ``deploy.models`` entry with each runtime of ``quantize.runtimes``.

    Returns the results; raises :class:`DefaultModelNotDeployableError` (after writing every output) when
    ``deploy.default_model`` fails a check on any runtime.
    """
    prepared = root / params.paths.prepared
    cfg, deploy = params.quantize, params.deploy
    sets = {s: load_pairs(prepared, s, params.scale) for s in (available_benchmarks(prepared) or ["val"])}
    sets |= _photo_sets(params, root)
    val_pairs = sets.get("val") or load_pairs(prepared, "val", params.scale)
    train_pairs = load_pairs(prepared, "train", params.scale)  # calibration crops, and mode qat's fine-tuning
    calibration = stage_calibration(params, prepared, train_pairs)
    upscale = partial(upscale_tiled, scale=params.scale, tile=deploy.tile, overlap=deploy.overlap, border=deploy.border)
    stress = stress_images()
    metrics_dir, plots_dir = root / params.paths.metrics, root / params.paths.plots / "quantize"
    _keep_qat_runs(params, root)
    with stage_run(
        "quantize",
        experiment=params.tracking.experiment,
        params={"quantize": cfg.model_dump(mode="json"), "models": deploy.models, "scale": params.scale},
        params_hash=params_hash(cfg),
        data_hash=data_hash(prepared),
        root=root,
    ) as tracker:
        results = {}
        for name in tqdm(deploy.models, desc="quantize"):
            results[name] = quantize_one(
                params, name, calibration, sets, val_pairs, stress, upscale, root, train_pairs, tracker
            )
            for runtime, result in results[name].items():
                _log(tracker, name, runtime, result, list(sets))
            for path in sorted(model_dir(root / params.paths.deploy, "int8", name).iterdir()):
                tracker.log_artifact(path, f"int8/{name}")
        rows = plot_rows(results, list(sets))
        write_json(metrics_dir / "quantize.json", _metrics(results))
        detail = {m: {rt: {k: r[k] for k in _DETAIL} for rt, r in runtimes.items()} for m, runtimes in results.items()}
        write_json(metrics_dir / "quantize_detail.json", detail)
        write_text(metrics_dir / "quantize.md", markdown(results, list(sets), _xlsr_outputs(params)))
        write_json(plots_dir / "int8_drop.json", rows)
        picture = save_int8_drop(rows, plots_dir / "int8_drop.png")
        for file_name in ("quantize.json", "quantize_detail.json", "quantize.md"):
            tracker.log_artifact(metrics_dir / file_name)
        tracker.log_artifact(picture)
        _stop_unless_deployable(deploy.default_model, results[deploy.default_model])
    return results


def _stop_unless_deployable(name: str, results: dict) -> None:
    """Raise :class:`DefaultModelNotDeployableError` (inside the MLflow run, which then ends FAILED)."""
    failed = {rt: r["failures"] for rt, r in results.items() if not r["deployable"]}
    if failed:
        reasons = "; ".join(f"{rt}: {' / '.join(f)}" for rt, f in failed.items())
        raise DefaultModelNotDeployableError(
            f"the default deploy model {name} breaks quantize.limits in int8 ({reasons}); the report is in "
            "metrics/quantize.md. Fix the model or its calibration, or choose another deploy.default_model"
        )
