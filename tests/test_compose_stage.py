"""The compose stage called directly (no DVC) on the smoke profile, and `edgesr upscale --model composed`.

Two small zoo models are trained for a few steps and composed in PyTorch fp32 (``deploy.runtime: torch``),
so the test needs no export or quantization; the int8 runtimes run the same batch runners, tested in
``test_compose_runtimes.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from edgesr.cli import main
from edgesr.config import Params, load_params, write_params
from edgesr.data.images import load_rgb8
from edgesr.stages import compose, prepare
from edgesr.stages import train as train_stage

ROOT = Path(__file__).resolve().parents[1]
BRANCHES = ["xlsr", "espcn"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Params, dict]:
    root = tmp_path_factory.mktemp("compose")
    params = load_params(ROOT / "params.yaml", "smoke")
    params = params.model_copy(
        update={
            "prepare": params.prepare.model_copy(update={"benchmarks": {}}),
            "models": {name: params.models[name] for name in BRANCHES},
            "deploy": params.deploy.model_copy(
                update={"models": BRANCHES, "default_model": "xlsr", "runtime": "torch", "precision": "fp32"}
            ),
            "compose": params.compose.model_copy(update={"branches": BRANCHES}),
        }
    )
    write_params(params, root / "params.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        prepare.run(params, root)
        for name in BRANCHES:
            train_stage.run(params, name, root)
        metrics = compose.run(params, root)
    return root, params, metrics


def test_compose_stage_reports_every_routing_both_ways(project):
    root, params, metrics = project
    assert metrics == json.loads((root / "metrics" / "compose.json").read_text())
    assert metrics["branches"] == BRANCHES
    largest = metrics["largest"]
    assert largest == max(BRANCHES, key=metrics["patch_mult_adds"].get)  # ESPCN counts more than XLSR
    val = metrics["sets"]["val"]
    patches = sum(val[largest]["histogram"])
    assert val[largest]["histogram"] == [patches if n == largest else 0 for n in BRANCHES]
    assert val[largest]["percent_of_largest_patches"] == pytest.approx(100.0)  # L on its own patches: 100 %
    assert val[largest]["percent_of_largest_frame"] > 100.0  # overlapping patches cost more than the frame
    assert val["classifier"]["router"] > 0 and val["edge"]["router"] == 0
    assert sum(val["classifier"]["histogram"]) == patches
    # ARM's rule argmax PSNR - eta cost: a larger eta never picks a costlier branch
    sweep = [val[f"edge_eta_{eta:g}"]["percent_of_largest_frame"] for eta in params.compose.edge.eta_sweep]
    assert sweep == sorted(sweep, reverse=True)
    assert [len(row) for row in metrics["edge_table"]["psnr"]] == [2] * len(metrics["edge_table"]["psnr"])
    assert metrics["classifier"]["history"][-1]["iteration"] == params.compose.classifier.iterations
    assert metrics["wallclock"]["largest"] == largest
    for routers in metrics["wallclock"]["sets"].values():
        assert {router: r["median_ratio"] > 0 for router, r in routers.items()} == {"classifier": True, "edge": True}
    table = (root / "metrics" / "compose.md").read_text()
    assert "| val | classifier |" in table and "Wall-clock: torch fp32" in table
    for picture in ("psnr_vs_mult_adds.png", "routing_map.png"):
        assert (root / "plots" / "compose" / picture).stat().st_size > 0
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=[params.tracking.experiment], output_format="list")
    (run,) = [r for r in runs if r.data.tags.get("dvc_stage") == "compose"]
    assert run.data.metrics["compose/val/classifier/psnr"] == pytest.approx(val["classifier"]["psnr"])
    assert "classifier/loss" in run.data.metrics


@pytest.mark.parametrize("router", ["classifier", "edge"])
def test_upscale_with_the_composed_model(project, tmp_path, monkeypatch, capsys, router):
    root, _, _ = project
    monkeypatch.chdir(root)
    image = tmp_path / "photo.png"
    Image.fromarray(load_rgb8(next((root / "data/prepared").rglob("*.png")))[:50, :70]).save(image)
    target = tmp_path / "out.png"
    assert main(["upscale", str(image), "-o", str(target), "--model", "composed", "--router", router]) == 0
    assert "composed x2 (torch fp32): wrote 1 image(s)" in capsys.readouterr().out
    assert load_rgb8(target).shape == (100, 140, 3)


def test_a_router_made_for_other_branches_is_refused(project, monkeypatch, capsys, tmp_path):
    root, params, _ = project
    monkeypatch.chdir(root)
    swapped = params.model_copy(update={"compose": params.compose.model_copy(update={"branches": BRANCHES[::-1]})})
    write_params(swapped, tmp_path / "params.yaml")
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(image)
    assert main(["upscale", str(image), "--params", str(tmp_path / "params.yaml"), "--model", "composed"]) == 2
    assert "was made for the branches ['xlsr', 'espcn'], but compose.branches resolves to" in capsys.readouterr().err
