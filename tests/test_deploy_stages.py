"""The export and quantize stages called directly (no DVC) on the smoke profile; `edgesr upscale` on their files."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image

from edgesr.artifacts import file_sha256
from edgesr.cli import main
from edgesr.config import Params, load_params, write_params
from edgesr.data.images import load_rgb8
from edgesr.data.stress import stress_images
from edgesr.deploy.runners import deployed_runner
from edgesr.deploy.tiling import upscale_tiled
from edgesr.quant.checks import flat_errors, output_errors
from edgesr.quant.overflow import resolve_overflow_fix, weight_bits
from edgesr.stages import export, prepare, quantize
from edgesr.stages import train as train_stage
from edgesr.stages.quantize import DefaultModelNotDeployableError

ROOT = Path(__file__).resolve().parents[1]
MODEL = "xlsr"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Params]:
    """A trained (smoke) XLSR, exported and quantized, in a fresh project with its own MLflow database."""
    root = tmp_path_factory.mktemp("deploy")
    params = load_params(ROOT / "params.yaml", "smoke")
    # the embedded photos only (quantize then reports the validation split), one model
    params = params.model_copy(
        update={
            "prepare": params.prepare.model_copy(update={"benchmarks": {}}),
            "models": {MODEL: params.models[MODEL]},
            "deploy": params.deploy.model_copy(update={"models": [MODEL], "default_model": MODEL}),
            "quantize": params.quantize.model_copy(update={"ignored_layers": {}}),
        }
    )
    write_params(params, root / "params.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        prepare.run(params, root)
        train_stage.run(params, MODEL, root)
        export.run(params, root)
        quantize.run(params, root)
    return root, params


def _runs(root: Path, params: Params, stage: str) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=[params.tracking.experiment], output_format="list")
    return [run for run in runs if run.data.tags.get("dvc_stage") == stage]


def test_export_stage_checks_parity_and_logs_the_models(project):
    root, params = project
    parity = json.loads((root / "metrics" / "export.json").read_text())[MODEL]
    assert parity["onnxruntime_max_abs"] < 1e-4 and parity["openvino_max_abs"] < 1e-4
    assert parity["openvino_fp16_max_abs"] < 1e-2
    (run,) = _runs(root, params, "export")
    assert run.data.metrics[f"parity/{MODEL}/openvino_max_abs"] == pytest.approx(parity["openvino_max_abs"])
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, f"openvino/{MODEL}")}
    assert {f"openvino/{MODEL}/openvino.xml", f"openvino/{MODEL}/openvino.bin"} <= artifacts
    models = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert f"{MODEL}-onnx" in {m.name for m in models}


def test_quantize_stage_reports_fp32_and_int8_per_runtime(project):
    root, params = project
    result = json.loads((root / "metrics" / "quantize.json").read_text())[MODEL]
    assert set(result) == {"openvino", "onnxruntime"}
    for runtime, numbers in result.items():
        fp32, int8 = numbers["psnr"]["fp32"]["val"], numbers["psnr"]["int8"]["val"]
        assert 10 < int8 < 60 and abs(fp32 - int8) < 3, runtime  # a 12-iteration model, but a real int8 one
        assert sum(numbers["executed"]["int8"].values()) > 0
    assert result["openvino"]["executed"]["int8"]["Convolution"] == 11  # every conv, first and last included
    table = (root / "metrics" / "quantize.md").read_text()
    assert "| xlsr | openvino |" in table and "paper 003 Table 2" in table
    (run,) = _runs(root, params, "quantize")
    drop = run.data.metrics[f"{MODEL}/int8/openvino/psnr_drop/val"]
    assert drop == pytest.approx(result["openvino"]["psnr"]["fp32"]["val"] - result["openvino"]["psnr"]["int8"]["val"])
    assert (root / "plots" / "quantize" / "int8_drop.png").stat().st_size > 0


def test_upscale_a_folder_skips_unreadable_files_and_converts_modes(project, tmp_path, monkeypatch, capsys):
    root, _ = project
    monkeypatch.chdir(root)
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (17, 9), dtype=np.uint8)).save(folder / "grey.png")
    Image.fromarray(rng.integers(0, 256, (12, 40, 4), dtype=np.uint8), "RGBA").save(folder / "rgba.png")
    (folder / "broken.png").write_bytes(b"not an image")
    assert main(["upscale", str(folder), "-o", str(tmp_path / "out")]) == 0  # default: OpenVINO int8
    captured = capsys.readouterr()
    assert "wrote 3 image(s), skipped 1 unreadable" in captured.out
    assert f"skipped {folder / 'broken.png'}: not a recognised image format" in captured.err
    assert "Warning" not in captured.err
    for name, (h, w) in {"rgb": (20, 30), "grey": (17, 9), "rgba": (12, 40)}.items():
        assert load_rgb8(tmp_path / "out" / f"{name}.png").shape == (2 * h, 2 * w, 3)
    assert not (tmp_path / "out" / "broken.png").exists()


def test_upscale_runtimes_agree_and_tiles_match_the_whole_image(project, tmp_path, monkeypatch):
    root, _ = project
    monkeypatch.chdir(root)
    image = tmp_path / "photo.png"
    Image.fromarray(load_rgb8(next((root / "data/prepared").rglob("*.png")))[:40, :50]).save(image)
    outputs = {}
    for runtime in ("torch", "onnxruntime", "openvino"):
        target = tmp_path / f"{runtime}.png"
        assert main(["upscale", str(image), "-o", str(target), "--runtime", runtime, "--precision", "fp32"]) == 0
        outputs[runtime] = load_rgb8(target).astype(int)
    whole = tmp_path / "whole.png"
    assert main(["upscale", str(image), "-o", str(whole), "--precision", "fp32", "--tile", "64"]) == 0
    assert max(np.abs(out - outputs["torch"]).max() for out in outputs.values()) <= 1
    assert np.abs(load_rgb8(whole).astype(int) - outputs["openvino"]).max() <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{broken}"], "broken.png: not a recognised image format"),
        (["{image}", "-o", "{image}"], "would overwrite the input"),
        (["{image}", "-o", "/proc/out.png"], "cannot write into /proc"),
        (["{image}", "-o", "{tmp}/out.jpg"], "must be a .png file"),
        (["{tmp}/missing.png"], "missing.png does not exist"),
        (["{image}", "--runtime", "torch", "--precision", "int8"], "int8 runs on openvino or onnxruntime"),
        (["{image}", "--model", "espcn"], "'espcn' is not deployed"),
    ],
)
def test_upscale_errors_name_the_problem(project, tmp_path, monkeypatch, capsys, args, message):
    root, _ = project
    monkeypatch.chdir(root)
    image, broken = tmp_path / "in.png", tmp_path / "broken.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    broken.write_bytes(b"not an image")
    before = image.read_bytes()
    argv = [a.format(image=image, broken=broken, tmp=tmp_path) for a in args]
    assert main(["upscale", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert image.read_bytes() == before


def test_quantize_stage_verifies_int8_on_the_stress_suite(project):
    root, params = project
    result = json.loads((root / "metrics" / "quantize.json").read_text())[MODEL]
    detail = json.loads((root / "metrics" / "quantize_detail.json").read_text())[MODEL]
    checks = json.loads((root / "models" / "deploy" / "int8" / MODEL / "checks.json").read_text())
    names = {image.name for image in stress_images()}
    for runtime in ("openvino", "onnxruntime"):
        summary = result[runtime]
        # per set: the mean drop and the worst image of the set
        val = summary["sets"]["val"]
        assert val["worst_image"] in {"chelsea", "flower"}
        images = detail[runtime]["images"]["val"]
        assert val["drop"] == pytest.approx(np.mean([i["fp32"] - i["int8"] for i in images.values()]))
        assert val["worst_drop"] == pytest.approx(max(i["fp32"] - i["int8"] for i in images.values()))
        # every stress image, flat ones against their colour in both forms
        stress = detail[runtime]["stress"]
        assert set(stress) == names
        assert set(stress["flat_grey_255"]) == {"int8_vs_fp32", "fp32_flat", "int8_flat"}
        worst = min(stress, key=lambda n: stress[n]["int8_vs_fp32"]["psnr"])
        assert summary["stress_summary"]["worst_image"] == worst
        # white stays white in int8 (the defect), and the default model passes every check
        white = stress["flat_grey_255"]["int8_vs_fp32"]
        assert white["mean_abs"] <= params.quantize.limits.flat_mean_levels, white
        assert summary["deployable"] and summary["failures"] == []
        # upscale reads the verdict from checks.json, tied to the file it was measured on
        int8_file = (
            root / "models" / "deploy" / "int8" / MODEL / ("openvino.xml" if runtime == "openvino" else "model.onnx")
        )
        # and to the weights' grid this CPU's int8 kernels run unclipped (edgesr.quant.overflow)
        fix = resolve_overflow_fix()
        assert checks[runtime] == {
            "deployable": True,
            "failures": [],
            "sha256": file_sha256(int8_file),
            "overflow_fix": fix,
        }
        assert summary["executed"]["weights"] == weight_bits(runtime, fix)
    table = (root / "metrics" / "quantize.md").read_text()
    assert "## Stress suite" in table and "## Deployable int8 models" in table and "(drop; worst image)" in table
    (run,) = _runs(root, params, "quantize")
    assert run.data.tags[f"int8_deployable.{MODEL}.openvino"] == ("yes" if result["openvino"]["deployable"] else "no")
    assert run.data.metrics[f"{MODEL}/int8/openvino/stress_min_psnr"] == pytest.approx(
        result["openvino"]["stress_summary"]["psnr"]
    )


def test_the_stress_numbers_are_the_upscaled_outputs(project, monkeypatch):
    root, params = project
    monkeypatch.chdir(root)
    detail = json.loads((root / "metrics" / "quantize_detail.json").read_text())[MODEL]["openvino"]["stress"]
    flat = next(image for image in stress_images() if image.name == "flat_magenta")
    cfg = params.deploy
    outputs = {
        precision: upscale_tiled(
            deployed_runner(params, MODEL, "openvino", precision) if precision == "fp32" else _int8_runner(root),
            flat.lr,
            params.scale,
            cfg.tile,
            cfg.overlap,
            border=cfg.border,
        )
        for precision in ("fp32", "int8")
    }
    expected = output_errors(outputs["int8"], outputs["fp32"], params.scale)
    assert detail["flat_magenta"]["int8_vs_fp32"] == pytest.approx(expected)
    level = flat_errors(outputs["fp32"], flat.flat_level, params.scale, 2 * params.scale)
    assert detail["flat_magenta"]["fp32_flat"] == pytest.approx(level)


def _int8_runner(root: Path):
    from edgesr.deploy.runtimes import openvino_runner

    return openvino_runner(root / "models" / "deploy" / "int8" / MODEL / "openvino.xml", 2)


def test_an_int8_model_that_fails_a_check_is_refused_and_stops_the_stage(project, tmp_path, monkeypatch, capsys):
    root, params = project
    copy = tmp_path / "project"
    shutil.copytree(root, copy)
    # Given limits no int8 model can meet (a 99 dB stress floor)
    limits = params.quantize.limits.model_copy(update={"stress_psnr_db": 99.0})
    strict = params.model_copy(update={"quantize": params.quantize.model_copy(update={"limits": limits})})
    write_params(strict, copy / "params.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{copy / 'mlflow.db'}")
    # When the default deploy model is quantized, the stage fails naming the check
    with pytest.raises(DefaultModelNotDeployableError, match=r"xlsr breaks quantize.limits .*< 99.0"):
        quantize.run(strict, copy)
    # after writing the report, which marks the model not deployable
    assert f"| {MODEL} | openvino | **no** |" in (copy / "metrics" / "quantize.md").read_text()
    assert json.loads((copy / "metrics" / "quantize.json").read_text())[MODEL]["openvino"]["deployable"] is False
    # and `edgesr upscale` refuses the int8 form with the failed check, while fp32 still works
    monkeypatch.chdir(copy)
    image = tmp_path / "in.png"
    Image.fromarray(np.full((20, 24, 3), 200, dtype=np.uint8)).save(image)
    assert main(["upscale", str(image), "-o", str(tmp_path / "int8.png")]) == 2
    err = capsys.readouterr().err
    assert f"{MODEL} int8 on openvino failed the quantize checks: stress image" in err and "--precision fp32" in err
    assert not (tmp_path / "int8.png").exists()
    assert main(["upscale", str(image), "-o", str(tmp_path / "fp32.png"), "--precision", "fp32"]) == 0
    assert load_rgb8(tmp_path / "fp32.png").shape == (40, 48, 3)


def test_qat_mode_fine_tunes_in_a_kept_run_folder_with_its_curve(project, tmp_path, monkeypatch):
    root, params = project
    copy = tmp_path / "project"
    shutil.copytree(root, copy)
    qat = params.quantize.qat.model_copy(update={"iterations": 4, "batch": 2, "distill_batch": 2, "val_every": 2})
    tuned = params.model_copy(
        update={"quantize": params.quantize.model_copy(update={"mode": "qat", "qat": qat, "runtimes": ["openvino"]})}
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{copy / 'mlflow.db'}")
    (copy / "models" / "qat" / "removed_model").mkdir(parents=True)  # a run of a model no longer deployed
    result = quantize.run(tuned, copy)[MODEL]["openvino"]
    assert abs(result["psnr"]["fp32"]["val"] - result["psnr"]["int8"]["val"]) < 3
    # the trainer's run folder, kept for resuming, and only this stage's models in it
    assert sorted(path.name for path in (copy / "models" / "qat").iterdir()) == [MODEL]
    saved = torch.load(copy / "models" / "qat" / MODEL / "last.pt", weights_only=True)
    assert saved["iteration"] == 4 and saved["metadata"]["qat"]["iterations"] == 4
    # the curve as a DVC plot, and in MLflow under the model's name
    curve = list(csv.DictReader((copy / "plots" / "quantize" / "qat" / f"{MODEL}.csv").open()))
    assert [row["iteration"] for row in curve] == ["2", "4"] and all(float(row["distill_l1"]) > 0 for row in curve)
    assert float(curve[-1]["val_psnr"]) == pytest.approx(result["psnr"]["int8"]["val"], abs=0.05)
    (run, *_) = sorted(_runs(copy, tuned, "quantize"), key=lambda r: r.info.start_time, reverse=True)
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, f"{MODEL}/qat/val/psnr_y")
    assert [m.step for m in history] == [2, 4]
    # back to PTQ: no fine-tuning run or curve is left to outlive its mode
    quantize.run(params, copy)
    assert (
        list((copy / "models" / "qat").iterdir()) == [] and list((copy / "plots" / "quantize" / "qat").iterdir()) == []
    )


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_int8_upscale_tiled_equals_one_window(project, tmp_path, monkeypatch, runtime):
    root, params = project
    monkeypatch.chdir(root)
    image = tmp_path / "photo.png"
    Image.fromarray(load_rgb8(next((root / "data/prepared").rglob("*.png")))[:45, :60]).save(image)
    outputs = {}
    for tile in (16, 4096):
        target = tmp_path / f"{tile}.png"
        assert main(["upscale", str(image), "-o", str(target), "--runtime", runtime, "--tile", str(tile)]) == 0
        outputs[tile] = load_rgb8(target).astype(int)
    # XLSR's receptive radius (5 LR pixels) is inside the 8-pixel overlap: int8 tiles are seamless too
    assert np.abs(outputs[16] - outputs[4096]).max() <= 1
