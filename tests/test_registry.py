"""Registration and promotion gates on a temporary sqlite MLflow registry (issue 12, items 1-4).

Each test gets a fresh registry and a copy of one tiny exported and quantized ESPCN project
(:mod:`tests.registry_project`); the metrics the gates read are written with known numbers.
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
import yaml

from edgesr.artifacts import CHECKS_FILE, Int8NotDeployableError, model_dir
from edgesr.cli import main
from edgesr.config import ConfigError, load_params
from edgesr.errors import MissingInputError, UsageError
from edgesr.registry.contents import CONTRACT, METRICS
from edgesr.registry.manifest import MANIFEST, SIGNATURE, verify_bundle
from edgesr.registry.promote import promote
from edgesr.registry.retraining import promote_new_candidates
from edgesr.registry.settings import PromotionGates
from edgesr.registry.signing import (
    PRIVATE_KEY,
    PUBLIC_KEY,
    InsecureKeyError,
    init_keys,
    load_private_key,
    load_public_key,
)
from edgesr.registry.store import CANDIDATE, CHAMPION, Registry
from edgesr.stages import register

from .registry_project import MODEL, export_tiny_model, project_params, write_stage_metrics

OV_PROFILE, ORT_PROFILE = "box-openvino-2t", "box-onnxruntime-1t"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("registry-build")
    export_tiny_model(project_params(root), root)
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh copy of the built project, its own sqlite registry (MLFLOW_TRACKING_URI), metrics at 30 dB."""
    root = tmp_path / "project"
    shutil.copytree(built, root)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(root)
    params = project_params(root)
    write_stage_metrics(params, root)
    return root, params, Registry(uri)


def _files(registry: Registry, version, tmp: Path) -> set[str]:
    folder = registry.download(version, ".", tmp)
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_register_makes_a_candidate_version_with_files_contract_metrics_and_tags(project, tmp_path):
    root, params, registry = project
    assert register.run(params, root) == {MODEL: {"version": "1", "new": True}}
    version = registry.by_alias(MODEL, CANDIDATE)
    assert version is not None and str(version.version) == "1" and version.aliases == [CANDIDATE]
    files = _files(registry, version, tmp_path / "v1")
    expected = {"int8/openvino.xml", "int8/openvino.bin", "int8/model.onnx", f"int8/{CHECKS_FILE}", "fp32/model.onnx"}
    assert expected | {CONTRACT, METRICS, "comparison/versions.png"} == files
    contract = json.loads((tmp_path / "v1" / CONTRACT).read_text())
    assert contract | {"scale": 2, "input": "lr", "output": "sr", "tile": 32, "overlap": 8} == contract
    assert json.loads((tmp_path / "v1" / METRICS).read_text())["quantize"]["openvino"]["psnr"]["int8"]["Set5"] == 30.0
    tags = version.tags
    assert {"git_commit", "params_hash", "data_hash", "contents_sha256", "register_run_id", "pipeline_run_id"} <= set(
        tags
    )
    assert len(tags["params_hash"]) == 16 and len(tags["data_hash"]) == 16
    assert tags["int8_psnr.onnxruntime.Set14"] == "30.000" and tags["int8_drop.openvino.Set5"] == "0.100"
    assert tags["fp32_psnr.Set5"] == "30.100" and tags["mult_adds_g"] == "6.150"
    assert {f"latency_ms.{p}" for p in (OV_PROFILE, ORT_PROFILE)} <= set(tags)
    assert json.loads((root / "metrics" / "register.json").read_text()) == {MODEL: {"version": "1", "new": True}}
    # the register run carries what pipeline runs are compared by (issue 12 item 7), and the version plot
    run = registry.client.get_run(tags["register_run_id"])
    assert run.data.metrics[f"{MODEL}/int8_psnr/openvino/Set5"] == 30.0
    assert run.data.metrics[f"{MODEL}/int8_drop/onnxruntime/Set14"] == pytest.approx(0.1)
    assert run.data.metrics[f"{MODEL}/latency_ms/{OV_PROFILE}"] == pytest.approx(
        float(tags[f"latency_ms.{OV_PROFILE}"]), abs=1e-3
    )
    assert (root / "plots" / "register" / MODEL / "versions.png").stat().st_size > 10_000


def test_unchanged_models_register_nothing_and_a_changed_contract_registers_a_new_version(project):
    root, params, registry = project
    register.run(params, root)
    write_stage_metrics(params, root, int8_psnr=31.0)  # metrics alone (a re-measured latency) are no new model
    assert register.run(params, root) == {MODEL: {"version": "1", "new": False}}
    assert register.run(project_params(root, tile=48), root) == {MODEL: {"version": "2", "new": True}}
    assert str(registry.by_alias(MODEL, CANDIDATE).version) == "2"


def test_register_refuses_an_int8_model_that_failed_the_quantize_checks(project):
    root, params, registry = project
    checks = model_dir(root / params.paths.deploy, "int8", MODEL) / CHECKS_FILE
    verdicts = json.loads(checks.read_text())
    verdicts["onnxruntime"] |= {"deployable": False, "failures": ["Set5 drop 0.9 dB > 0.3"]}
    checks.write_text(json.dumps(verdicts))
    with pytest.raises(Int8NotDeployableError, match="failed the quantize checks: Set5 drop 0.9 dB"):
        register.run(params, root)
    assert registry.latest(MODEL) is None


def test_keys_init_makes_an_owner_only_private_key_and_refuses_to_overwrite_it(tmp_path):
    private, public = init_keys(tmp_path / "keys")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    with pytest.raises(UsageError, match="pass --force"):
        init_keys(tmp_path / "keys")
    assert main(["keys", "init", "--dir", str(tmp_path / "keys"), "--force"]) == 0
    assert public.read_bytes() != b"" and (tmp_path / "keys" / PRIVATE_KEY).stat().st_mode & 0o077 == 0
    private.chmod(0o644)
    with pytest.raises(InsecureKeyError, match=f"chmod 600 {private}"):
        load_private_key(tmp_path / "keys")
    public.write_text("not a key")
    with pytest.raises(UsageError, match="is not a PEM public key"):
        load_public_key(public)


def test_device_commands_name_a_bad_profile_or_home_and_the_fix(project, tmp_path, capsys):
    root, _, _ = project
    args = [
        "device",
        "pull",
        "--profile",
        "box-x",
        "--home",
        str(tmp_path / "d"),
        "--params",
        str(root / "params.yaml"),
    ]
    assert main(args) == 2
    assert (
        "no device profile 'box-x'; registry.profiles: box-openvino-2t, box-onnxruntime-1t" in capsys.readouterr().err
    )
    args[3] = "box-openvino-2t"
    assert main(args) == 2  # no key pair yet: the device has no public key to trust
    assert "signing.pub not found: give the device the signing.pub of `edgesr keys init`" in capsys.readouterr().err
    assert main(["device", "status", "--home", str(tmp_path / "none")]) == 2
    assert "is not a device home: run `edgesr device pull" in capsys.readouterr().err


def test_first_promotion_passes_every_gate_and_publishes_a_signed_bundle_per_profile(project, tmp_path):
    root, params, registry = project
    init_keys(root / "keys")
    register.run(params, root)
    decision = promote(params, MODEL, registry)
    assert decision.promoted and decision.champion_before is None
    assert decision.bundles == [f"bundles/{OV_PROFILE}", f"bundles/{ORT_PROFILE}"]
    version = registry.by_alias(MODEL, CHAMPION)
    assert str(version.version) == "1" and set(version.aliases) == {CANDIDATE, CHAMPION}
    tags = version.tags
    assert tags["promotion.decision"] == "promoted" and tags["promotion.failed_gates"] == "none"
    assert tags["gate.psnr/openvino/Set5.limit"] == "none"  # no champion to compare with
    assert tags["gate.int8_drop/onnxruntime/Set14.value"] == "0.1"
    assert tags["gate.int8_drop/onnxruntime/Set14.limit"] == "<= 0.3"
    assert float(tags[f"gate.latency/{OV_PROFILE}.value"]) > 0 and tags[f"gate.latency/{OV_PROFILE}.passed"] == "yes"
    public = load_public_key(root / "keys" / PUBLIC_KEY)
    for profile, model_file in ((OV_PROFILE, "model/openvino.bin"), (ORT_PROFILE, "model/model.onnx")):
        bundle = registry.download(version, f"bundles/{profile}", tmp_path / profile)
        manifest = verify_bundle(bundle, public)
        assert (manifest["registered_model"], manifest["version"], manifest["alias"]) == (MODEL, "1", CHAMPION)
        assert manifest["profile"]["name"] == profile and manifest["scale"] == 2
        assert model_file in manifest["files"] and "reference/lr.png" in manifest["files"]
        assert 5 < manifest["reference"]["psnr_y"] < 40 and len(manifest["reference"]["output_sha256"]) == 64
        assert manifest["metrics"]["int8_drop"] == {"Set5": 0.1, "Set14": 0.1}
        names = {p.name for p in bundle.rglob("*")}
        assert {MANIFEST, SIGNATURE} <= names and PRIVATE_KEY not in names


def test_a_failed_gate_leaves_the_champion_and_is_written_on_the_version(project, capsys):
    root, params, registry = project
    init_keys(root / "keys")
    register.run(params, root)
    promote(params, MODEL, registry)
    # a new model 0.5 dB worse in int8 on every set: 29.5 < 30.0 - 0.05
    params = project_params(root, tile=48)
    write_stage_metrics(params, root, int8_psnr=29.5)
    register.run(params, root)
    assert main(["promote", MODEL]) == 2
    printed = capsys.readouterr()
    failed = "psnr/onnxruntime/Set5, psnr/onnxruntime/Set14, psnr/openvino/Set5, psnr/openvino/Set14"
    assert f"espcn version 2: NOT promoted: failed gate(s) {failed};" in printed.out
    assert "champion stays at version 1" in printed.out and "a gate failed" in printed.err
    assert str(registry.by_alias(MODEL, CHAMPION).version) == "1"
    tags = registry.version(MODEL, "2").tags
    assert tags["promotion.decision"] == "rejected"
    assert tags["gate.psnr/openvino/Set5.value"] == "29.5" and tags["gate.psnr/openvino/Set5.limit"] == ">= 29.95"
    assert tags["gate.psnr/openvino/Set5.passed"] == "no" and tags["gate.int8_drop/openvino/Set5.passed"] == "yes"
    assert tags["promotion.champion_before"] == "1" and "bundles.profiles" not in tags
    # a second attempt with a looser gate passes; the first attempt stays on record
    looser = params.model_copy(
        update={"registry": params.registry.model_copy(update={"gates": PromotionGates(psnr_tolerance_db=1.0)})}
    )
    assert promote(looser, MODEL, registry).promoted
    tags = registry.version(MODEL, "2").tags
    assert (tags["promotion.attempts"], tags["promotion.decision"], tags["gate.psnr/openvino/Set5.limit"]) == (
        "2",
        "promoted",
        ">= 29",
    )
    assert tags["promotion.1.decision"] == "rejected" and tags["promotion.1.failed_gates"].startswith("psnr/")


def test_a_latency_budget_gate_fails_in_a_dry_run_that_writes_nothing(project):
    root, _, registry = project
    tight = {"runtime": "onnxruntime", "threads": 1, "latency_budget_ms": 1e-6, "tile": 32}
    params = project_params(root, registry={"profiles": {"tight-box": tight}})
    register.run(params, root)
    decision = promote(params, MODEL, registry, dry_run=True)  # no key needed: nothing is signed
    (latency,) = [gate for gate in decision.gates if gate.name == "latency/tight-box"]
    assert not latency.passed and latency.value > 1e-6 and latency.limit == 1e-6
    assert not decision.passed and "failed gate(s) latency/tight-box" in decision.describe()
    assert registry.by_alias(MODEL, CHAMPION) is None
    assert "promotion.decision" not in registry.version(MODEL, "1").tags


def test_promotion_without_a_signing_key_says_how_to_make_one(project):
    root, params, registry = project
    register.run(params, root)
    with pytest.raises(MissingInputError, match="edgesr keys init"):
        promote(params, MODEL, registry)
    assert registry.by_alias(MODEL, CHAMPION) is None


def test_promotion_without_a_candidate_says_how_to_register_one(project):
    _, params, registry = project
    with pytest.raises(MissingInputError, match="dvc repro register"):
        promote(params, MODEL, registry)


def test_after_a_pipeline_run_only_a_new_candidate_is_promoted(project):
    root, params, registry = project
    register.run(params, root)
    (outcome,) = promote_new_candidates(params, registry, root).values()
    assert outcome.startswith("espcn version 1: promotion not attempted:") and "edgesr keys init" in outcome
    init_keys(root / "keys")
    register.run(project_params(root, tile=48), root)
    (outcome,) = promote_new_candidates(params, registry, root).values()
    assert outcome.startswith("espcn version 2: promoted to champion")
    assert str(registry.by_alias(MODEL, CHAMPION).version) == "2"
    register.run(project_params(root, tile=48), root)  # the scheduled run found nothing new
    assert promote_new_candidates(params, registry, root) == {
        MODEL: "espcn: unchanged since version 2; nothing to promote"
    }


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"models": ["edsr"]},
            r"registry.models names edsr, which is not exported and quantized; pick from deploy.models",
        ),
        (
            {"profiles": {"box": {"runtime": "openvino", "precision": "fp32", "threads": 1, "latency_budget_ms": 9}}},
            "openvino fp32 is not registered",
        ),
        ({"profiles": {"a box": {"runtime": "onnxruntime", "threads": 1, "latency_budget_ms": 9}}}, "names a folder"),
    ],
)
def test_bad_registry_settings_name_the_key_and_the_fix(tmp_path, section, message):
    data = load_params(Path(__file__).resolve().parents[1] / "params.yaml").model_dump(mode="json")
    data["registry"] |= section
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_params(tmp_path / "params.yaml")


def test_the_screenshot_opens_mlflows_compare_page_on_the_runs_in_the_model_training_view():
    """pipelines.ui_screenshot: the hash route takes the run and experiment ids as URL-encoded JSON lists."""
    from urllib.parse import unquote

    from pipelines.ui_screenshot import compare_url

    url = compare_url("http://127.0.0.1:5000", "7", ["a1", "b2"])
    route, query = url.split("#", 1)[1].split("?")
    assert route == "/compare-runs"
    fields = dict(part.split("=") for part in query.split("&"))
    assert json.loads(unquote(fields["runs"])) == ["a1", "b2"] and json.loads(unquote(fields["experiments"])) == ["7"]
    assert fields["workflowType"] == "machine_learning"


def test_a_set_the_champion_was_measured_on_and_the_candidate_was_not_fails_its_gate():
    from edgesr.registry.gates import failed, quality_gates

    def metrics(psnr: dict[str, float]) -> dict:
        sets = {s: {"drop": 0.1} for s in psnr}
        return {"quantize": {"openvino": {"psnr": {"int8": psnr}, "sets": sets}}, "export": {"openvino_max_abs": 0.0}}

    champion = metrics({"Set5": 35.0, "SunHays80": 34.0})
    candidate = metrics({"Set5": 35.1})  # a clean clone without ../shared: no SunHays80
    gates = quality_gates(candidate, champion, PromotionGates(), ["openvino"])
    assert [g.name for g in failed(gates)] == ["psnr/openvino/SunHays80"]
    assert "not measured" in next(g for g in gates if g.name == "psnr/openvino/SunHays80").describe()


def test_a_device_home_held_by_a_pull_refuses_a_second_pull_and_status_only_reads(tmp_path):
    """The device home's lock: a second pull stops at once; status leaves the running pull's swap alone."""
    import fcntl

    from edgesr.registry.device import DeviceBusyError, DeviceHome, pull, status
    from edgesr.registry.signing import load_public_key

    home = DeviceHome(tmp_path / "box")
    home.root.mkdir()
    pending = {"pending": {"current_before": None, "previous_before": None}}
    home.state_file.write_text(json.dumps(pending))  # a swap the running pull has not checked yet
    _, public = init_keys(tmp_path / "keys")
    registry = Registry(f"sqlite:///{tmp_path / 'unused.db'}")
    with open(home.root / ".lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(DeviceBusyError, match="another `edgesr device pull` is running"):
            pull(home.root, ORT_PROFILE, MODEL, registry, load_public_key(public), 0.05)
        assert status(home.root)["pull_in_progress"] is True
        assert json.loads(home.state_file.read_text()) == pending  # not rolled back under the running pull
    assert status(home.root)["pull_in_progress"] is False
    assert json.loads(home.state_file.read_text())["pending"] is None  # an interrupted pull: rolled back
