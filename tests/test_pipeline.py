"""End to end on a lean smoke project served on its schedule by a real Prefect server: the first tick runs every
DVC stage, registers the default model and promotes it, MLflow groups the runs, a second run retrains nothing,
and a one-value change reruns only what depends on it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml

from edgesr.config import load_params, write_params

from .prefect_server import prefect_server, read_deployment
from .smoke_project import lean, make_smoke_project, run_in

pytestmark = pytest.mark.slow

DEPLOYMENT = "edgesr-pipeline/edgesr-scheduled"  # pipelines.serve's flow and default deployment name
PIPELINE_TIMEOUT_S = 900  # every stage of the lean smoke pipeline on 2 busy cores: 490 s from the tick on a slow day
TICK_MARGIN_S = 60  # the serving process registers its deployment within this (imports on 2 busy cores)


def _ran(dvc_output: str) -> set[str]:
    """The stages a `dvc repro` output says it ran."""
    return {line.split("'")[1] for line in dvc_output.splitlines() if line.startswith("Running stage '")}


def _next_tick() -> datetime:
    """The first whole minute (UTC) at least TICK_MARGIN_S from now."""
    soon = datetime.now(UTC) + timedelta(seconds=TICK_MARGIN_S)
    return soon.replace(second=0, microsecond=0) + timedelta(minutes=1)


@pytest.fixture(scope="module")
def smoke_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone (this checkout's code, shipped benchmark sets, dvc.yaml) with the smoke profile's params
    cut to one zoo model and one searched size (smoke_project.lean) and a signing key, so a run promotes."""
    from edgesr.registry.signing import init_keys

    project = make_smoke_project(tmp_path_factory.mktemp("project"))
    params = lean(load_params(project / "params.yaml"))
    write_params(params, project / "params.yaml")
    init_keys(project / params.registry.keys_dir)
    return project


@pytest.fixture(scope="module")
def served_runs(smoke_project: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """`python -m pipelines.serve` against a real `prefect server start`, with schedule.cron set to a daily tick a
    minute or so ahead: the run the server's scheduler makes at that tick (none started by hand), then the next
    day's run brought forward to now. Both finished; serving stops before the tests change the project."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    with prefect_server(tmp_path_factory.mktemp("prefect")) as server:
        params = load_params(smoke_project / "params.yaml")
        tick = _next_tick()
        daily = f"{tick.minute} {tick.hour} * * *"
        write_params(params.model_copy(update={"schedule": params.schedule.model_copy(update={"cron": daily})}),
                     smoke_project / "params.yaml")  # fmt: skip
        server.serve_pipeline(smoke_project)
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:
            dep = server.wait_for(lambda: read_deployment(client, DEPLOYMENT), "the served pipeline deployment")
            assert [s.schedule.cron for s in dep.schedules] == [daily]

            def runs() -> list[Any]:
                of_deployment = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[dep.id]))
                return client.read_flow_runs(flow_run_filter=of_deployment, sort=FlowRunSort.EXPECTED_START_TIME_ASC)

            def finished(run_id: Any) -> Any:
                run = client.read_flow_run(run_id)
                return run if run.state is not None and run.state.is_final() else None

            ticks = server.wait_for(lambda: (r := runs()) and len(r) >= 2 and r, "the scheduler's daily runs")
            assert ticks[0].expected_start_time == tick, f"the deployment registered after {tick}: raise TICK_MARGIN_S"
            first = server.wait_for(lambda: finished(ticks[0].id), "the first tick's run to finish", PIPELINE_TIMEOUT_S)
            client.set_flow_run_state(ticks[1].id, Scheduled(scheduled_time=datetime.now(UTC)))
            second = server.wait_for(lambda: finished(ticks[1].id), "the next day's run, brought forward", 300)
        server.assert_server_log_clean()
        return [first, second]


def test_the_served_pipeline_runs_every_stage_registers_promotes_and_groups_mlflow_runs(
    smoke_project: Path, served_runs: list[Any]
):
    """Issue 12 item 6: the scheduled run of the served flow runs every stage, registers the default model as a
    candidate and promotes it (the project has a signing key); the next run rereads the sources and retrains
    nothing (the same images give the same data)."""
    from edgesr.registry.store import CANDIDATE, CHAMPION, Registry
    from pipelines.flow import list_stages

    for run in served_runs:
        assert run.auto_scheduled and run.state.is_completed(), run.state
    params = load_params(smoke_project / "params.yaml")
    stages = list_stages(smoke_project)
    sizes, scales = list(params.search.sizes), params.search.retrain.scales
    assert stages == [
        "sources",
        "prepare",
        *(f"train@{name}" for name in params.models),
        *(f"search@{size}" for size in sizes),
        *(f"retrain@{size}-{scale}" for size in sizes for scale in scales),
        "evaluate",
        "figures",
        "export",
        "quantize",
        "compose",
        "register",
    ]

    # the evaluate table has bicubic, every trained model and every retrained subnet
    table = json.loads((smoke_project / "metrics" / "evaluate.json").read_text())
    subnets = {f"fgnas_{size}_x{scale}" for size in sizes for scale in scales}
    assert set(table) == {"bicubic", *params.models, *subnets}
    for size in sizes:
        # the searched budget is met, and the retrained subnet costs exactly what the search counted (Eq. 3)
        found = json.loads((smoke_project / "metrics" / "search" / f"{size}.json").read_text())
        assert found["within_budget"] and abs(found["cost"] / found["target"] - 1) <= 0.05
        assert table[f"fgnas_{size}_x2"]["mult_adds_g"] == pytest.approx(found["mult_adds_g"], rel=1e-12)
        assert (smoke_project / "plots" / "figures" / f"search_{size}_architecture.png").stat().st_size > 0
    for name in [*params.models, *subnets]:
        assert (smoke_project / "plots" / "figures" / f"{name}_sample_crops.png").stat().st_size > 0
    # the shipped Set5 reproduces the published bicubic numbers
    assert table["bicubic"]["psnr_Set5"] == pytest.approx(33.66, abs=0.03)
    assert table["bicubic"]["ssim_Set5"] == pytest.approx(0.9299, abs=0.002)
    assert table["bicubic"]["params"] == 0
    for name in params.models:
        assert table[name]["params"] > 0 and table[name]["mult_adds_g"] > 0 and table[name]["latency_ms"] > 0
    header = (smoke_project / "metrics" / "evaluate.md").read_text().splitlines()[0]
    assert header.startswith("| model |") and header.endswith("| latency (ms) | flag |")
    # every deployed model exported with parity and quantized with both runtimes
    parity = json.loads((smoke_project / "metrics" / "export.json").read_text())
    quantized = json.loads((smoke_project / "metrics" / "quantize.json").read_text())
    assert set(parity) == set(quantized) == set(params.deploy.models)
    assert all(p["onnxruntime_max_abs"] < 1e-4 and p["openvino_max_abs"] < 1e-4 for p in parity.values())
    assert {runtime for result in quantized.values() for runtime in result} == set(params.quantize.runtimes)

    # registered as a candidate by the first run and promoted by it
    registry = Registry(f"sqlite:///{smoke_project / 'mlflow.db'}")
    candidate = registry.by_alias(params.deploy.default_model, CANDIDATE)
    champion = registry.by_alias(params.deploy.default_model, CHAMPION)
    assert candidate is not None and champion is not None and str(candidate.version) == str(champion.version) == "1"
    assert candidate.tags["promotion.decision"] == "promoted"

    # one parent run per flow run; the first with every stage nested under it, each with the four tags
    mlflow.set_tracking_uri(f"sqlite:///{smoke_project / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=[params.tracking.experiment], output_format="list")
    first, second = sorted((r for r in runs if r.data.tags.get("kind") == "pipeline"), key=lambda r: r.info.start_time)
    assert {first.data.tags[f"stage.{name.replace('@', '/')}"] for name in stages} == {"ran"}
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == first.info.run_id]
    # every stage but `sources` (a fingerprint file, nothing to track) records its run
    assert sorted(r.data.tags["dvc_stage"] for r in children) == sorted(stages[1:])
    for run in children:
        assert {"git_commit", "params_hash", "data_hash"} <= set(run.data.tags)
    train_run = next(r for r in children if r.data.tags["dvc_stage"].startswith("train@"))
    assert "val/psnr_y" in train_run.data.metrics and train_run.data.params["train.iterations"] == "12"
    # the second run rereads the sources; the same images give the same data, so nothing retrains
    assert second.data.tags["stage.sources"] == "ran"
    assert {second.data.tags[f"stage.{name.replace('@', '/')}"] for name in stages[1:]} == {"up to date"}
    assert not any(r.data.tags.get("mlflow.parentRunId") == second.info.run_id for r in runs)

    # nothing changed: nothing reruns but the fingerprint of the source folders
    assert _ran(run_in(smoke_project, "dvc", "repro")) == {"sources"}
    # one value changed: only the stage that reads it reruns (then the value goes back)
    saved = (smoke_project / "params.yaml").read_text()
    data = yaml.safe_load(saved)
    data["evaluate"]["latency_repeats"] = 2
    (smoke_project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    status = json.loads(run_in(smoke_project, "dvc", "status", "--json"))
    (smoke_project / "params.yaml").write_text(saved)
    assert set(status) - {"sources"} == {"evaluate"}


def test_default_upscale_keeps_flat_and_bright_content(smoke_project: Path, served_runs: list[Any], tmp_path):
    """`edgesr upscale` with the pipeline's default (the S subnet, OpenVINO int8) on a flat grey, a white and a
    bright photo: the levels of its own fp32 form within quantize.limits' flat bounds, no stripes, bright borders."""
    import numpy as np
    from PIL import Image

    from edgesr.data.images import load_rgb8
    from edgesr.data.stress import stress_images
    from edgesr.quant.checks import flat_errors, output_errors

    params = load_params(smoke_project / "params.yaml")
    limits, scale = params.quantize.limits, params.scale
    bright = next(image.lr for image in stress_images() if image.name == "bright_snow")
    inputs = {
        "grey": np.full((40, 56, 3), 128, np.uint8),
        "white": np.full((40, 56, 3), 255, np.uint8),
        "bright": bright,
    }
    folder = tmp_path / "in"
    folder.mkdir()
    for name, image in inputs.items():
        Image.fromarray(image).save(folder / f"{name}.png")
    for precision, runtime in (("int8", "openvino"), ("fp32", "torch")):  # one folder per call, as a user does
        run_in(smoke_project, "edgesr", "upscale", str(folder), "-o", str(tmp_path / precision),
               "--runtime", runtime, "--precision", precision)  # fmt: skip
    for name, image in inputs.items():
        outputs = {precision: load_rgb8(tmp_path / precision / f"{name}.png") for precision in ("int8", "fp32")}
        assert outputs["int8"].shape == (scale * image.shape[0], scale * image.shape[1], 3)
        errors = output_errors(outputs["int8"], outputs["fp32"], margin=0)  # borders included
        if name == "bright":
            assert errors["psnr"] >= limits.stress_psnr_db, errors
            continue
        assert errors["mean_abs"] <= limits.flat_mean_levels and errors["max_abs"] <= limits.flat_max_levels, errors
        level = (int(image[0, 0, 0]),) * 3
        # no stripes in int8 beyond the fp32 form's own (a 12-iteration model has some), and the border pixel
        # as the interior pixel of the same sub-pixel phase
        spread = {p: flat_errors(outputs[p], level, scale, margin=0)["phase_spread"] for p in outputs}
        assert spread["int8"] <= spread["fp32"] + 2, (name, spread)
        assert abs(outputs["int8"][0, 0].astype(int) - outputs["int8"][20, 20].astype(int)).max() <= 2


def _changed(project: Path) -> set[str]:
    """Stages `dvc status` reports changed, besides `sources` (always changed by design)."""
    return set(json.loads(run_in(project, "dvc", "status", "--json"))) - {"sources"}


def test_new_images_rerun_prepare_and_new_sets_or_scales_retrain_nothing(smoke_project, served_runs, tmp_path):
    from PIL import Image

    from edgesr.data.sources import embedded_images

    folder = tmp_path / "Extra"
    folder.mkdir()
    photos = dict(embedded_images())
    Image.fromarray(photos["astronaut"][:96, :96]).save(folder / "a.png")
    data = yaml.safe_load((smoke_project / "params.yaml").read_text())

    # a new benchmark set: prepare reruns, then only the stages that measure benchmark sets
    data["prepare"]["benchmarks"]["Extra"] = str(folder)
    (smoke_project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert _ran(run_in(smoke_project, "dvc", "repro", "prepare")) == {"sources", "prepare"}
    # register reads the prepared manifest for its data hash (it then finds the models unchanged); compose
    # trains its classifier on the prepared training patches and evaluates every benchmark set
    assert _changed(smoke_project) == {"evaluate", "quantize", "compose", "register"}

    # the same images again change nothing; an image added to a configured folder changes the fingerprint,
    # so prepare reruns under plain `dvc repro`
    run_in(smoke_project, "dvc", "repro", "sources")
    assert _changed(smoke_project) == {"evaluate", "quantize", "compose", "register"}
    Image.fromarray(photos["coffee"][:96, :96]).save(folder / "b.png")
    run_in(smoke_project, "dvc", "repro", "sources")
    assert "prepare" in _changed(smoke_project)

    # a new scale: no model retrains (the figures redraw: they read the validation images of every scale)
    data["prepare"]["scales"] = [2, 3]
    (smoke_project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    run_in(smoke_project, "dvc", "repro", "prepare")
    assert _changed(smoke_project) == {"evaluate", "figures", "quantize", "compose", "register"}
