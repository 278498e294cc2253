"""The device loop over HTTP against a real `mlflow server` started on a free localhost port (issue 12, item 5).

The server proxies artifacts (``--artifacts-destination``), so registration, promotion and every device
talk to it only through its REST API, as a fleet would. Tampering is done where an attacker would: on
the files the server serves. The tests run in file order on one server: install on two devices, upgrade,
tampered bundles rejected, an interrupted pull, and a rollback after a failing reference check.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgesr.cli import main
from edgesr.errors import MissingInputError
from edgesr.registry.device import SmokeCheckFailedError, pull, status
from edgesr.registry.manifest import MANIFEST, SIGNATURE, BundleRejectedError, write_signed_manifest
from edgesr.registry.promote import promote
from edgesr.registry.signing import PUBLIC_KEY, init_keys, load_private_key, load_public_key
from edgesr.registry.store import CHAMPION, Registry
from edgesr.stages import register

from .registry_project import MODEL, export_tiny_model, project_params, write_stage_metrics

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
OV_PROFILE, ORT_PROFILE = "box-openvino-2t", "box-onnxruntime-1t"
SERVER_START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``mlflow server`` with a sqlite backend and proxied artifacts; yields (URI, artifact folder)."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port, artifacts = _free_port(), folder / "artifacts"
    args = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    args += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(artifacts)]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    with (folder / "server.log").open("wb") as log:
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            assert process.poll() is None, (folder / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not answer /health"
            time.sleep(1)
        yield uri, artifacts
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def loop(server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A project whose ESPCN version 1 is registered and promoted on the server; the signing keys."""
    uri, artifacts = server
    root = tmp_path_factory.mktemp("device-project")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(root)
        params = project_params(root)
        export_tiny_model(params, root)
        write_stage_metrics(params, root)
        init_keys(root / "keys")
        registry = Registry(uri)
        register.run(params, root)
        assert promote(params, MODEL, registry).promoted
        yield {"root": root, "params": params, "registry": registry, "artifacts": artifacts, "uri": uri}


def _pull(loop: dict, home: Path, profile: str) -> dict:
    public = load_public_key(loop["root"] / "keys" / PUBLIC_KEY)
    tolerance = loop["params"].registry.smoke_tolerance_db
    return pull(home, profile, MODEL, loop["registry"], public, tolerance, device_id=home.name)


def _served_bundle(loop: dict, version: str, profile: str) -> Path:
    """The folder the server serves a version's bundle from (``mlflow-artifacts:/`` under its destination)."""
    registry: Registry = loop["registry"]
    location = registry._location(registry.version(MODEL, version))
    return loop["artifacts"] / location.removeprefix("mlflow-artifacts:/") / "bundles" / profile


@contextmanager
def tampered(folder: Path) -> Iterator[Path]:
    """Let a test change the served bundle, and put the original back afterwards."""
    backup = folder.with_name(folder.name + ".orig")
    shutil.copytree(folder, backup)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)
        backup.rename(folder)


def test_two_devices_with_different_profiles_install_the_champion_and_report_back(loop, tmp_path_factory, capsys):
    homes = tmp_path_factory.mktemp("homes")
    loop["homes"] = homes
    for profile in (OV_PROFILE, ORT_PROFILE):
        args = ["device", "pull", "--profile", profile, "--home", str(homes / profile), "--device-id", profile]
        args += ["--params", str(loop["root"] / "params.yaml"), "--registry", loop["uri"]]
        assert main(args) == 0
        assert "installed, running espcn version 1" in capsys.readouterr().out
        assert main(["device", "status", "--home", str(homes / profile)]) == 0
        state = json.loads(capsys.readouterr().out)
        assert state["version"] == "1" and state["profile"] == profile and state["previous"] is None
        assert state["running"] == {"registered_model": MODEL, "version": "1", "scale": 2}
        check = state["check"]
        assert check["passed"] and abs(check["psnr_y"] - check["expected_psnr_y"]) <= 0.05
        assert check["output_hash_matches"]  # same runtime, threads and machine as the promotion: bit-exact
        assert (homes / profile / "current" / "model").is_dir()
    tags = loop["registry"].version(MODEL, "1").tags
    for profile in (OV_PROFILE, ORT_PROFILE):
        assert tags[f"device.{profile}.status"] == "installed" and tags[f"device.{profile}.profile"] == profile
        assert float(tags[f"device.{profile}.latency_ms"]) > 0
        assert "output hash matches" in tags[f"device.{profile}.check"]
    # pulling again changes nothing
    assert _pull(loop, homes / OV_PROFILE, OV_PROFILE)["last_pull"]["result"] == "up to date"


def test_a_new_champion_is_installed_and_the_old_release_kept_as_previous(loop):
    root, registry = loop["root"], loop["registry"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", loop["uri"])
        params = project_params(root, tile=48)  # a new input contract: a new version
        register.run(params, root)
        assert promote(params, MODEL, registry, root=root).promoted
    assert str(registry.by_alias(MODEL, CHAMPION).version) == "2"
    home = loop["homes"] / OV_PROFILE
    state = _pull(loop, home, OV_PROFILE)
    assert state["version"] == "2" and state["last_pull"]["result"] == "installed"
    now = status(home)
    assert now["current"].startswith("releases/espcn-v2-") and now["previous"].startswith("releases/espcn-v1-")
    assert sorted(p.name.split("-")[1] for p in (home / "releases").iterdir()) == ["v1", "v2"]
    assert registry.version(MODEL, "2").tags[f"device.{OV_PROFILE}.status"] == "installed"
    assert registry.version(MODEL, "1").tags[f"device.{OV_PROFILE}.status"] == "replaced by version 2"
    assert registry.version(MODEL, "1").tags[f"device.{ORT_PROFILE}.status"] == "installed"  # not upgraded yet


def test_a_profile_the_champion_has_no_bundle_for_is_told_how_to_get_one(loop, tmp_path):
    message = "version 2 has no bundle for profile 'box-new': add the profile to registry.profiles and promote"
    with pytest.raises(MissingInputError, match=message):
        _pull(loop, tmp_path / "device", "box-new")
    assert status(tmp_path / "device")["current"] is None


def _flip_a_byte(bundle: Path) -> None:
    path = bundle / "model" / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(bundle: Path) -> None:
    path = bundle / "model" / "model.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _sign_with_another_key(bundle: Path) -> None:
    (bundle / SIGNATURE).write_bytes(Ed25519PrivateKey.generate().sign((bundle / MANIFEST).read_bytes()))


def _edit_manifest(bundle: Path) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["reference"]["psnr_y"] += 1.0
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        (_flip_a_byte, "tampered file: the sha256 of model/model.onnx differs"),
        (_truncate, "truncated or resized file: model/model.onnx has"),
        (lambda bundle: (bundle / "reference" / "hr.png").unlink(), "missing file: reference/hr.png"),
        (lambda bundle: (bundle / SIGNATURE).unlink(), "unsigned bundle"),
        (_sign_with_another_key, "bad signature"),
        (_edit_manifest, "bad signature"),
        (lambda bundle: (bundle / "model" / "extra.bin").write_bytes(b"x"), "unexpected files"),
        (lambda bundle: (bundle / "model" / MANIFEST).write_bytes(b"{}"), "unexpected files"),  # not only top level
    ],
    ids=[
        "tampered",
        "truncated",
        "missing-file",
        "unsigned",
        "other-key",
        "edited-manifest",
        "extra-file",
        "nested-manifest",
    ],
)
def test_a_bad_bundle_is_rejected_and_the_device_keeps_what_it_ran(loop, attack, reason):
    home = loop["homes"] / ORT_PROFILE  # still at version 1; the champion is 2
    before = status(home)
    with tampered(_served_bundle(loop, "2", ORT_PROFILE)) as bundle:
        attack(bundle)
        with pytest.raises(BundleRejectedError, match=reason):
            _pull(loop, home, ORT_PROFILE)
    after = status(home)
    assert (after["current"], after["previous"], after["version"]) == (before["current"], before["previous"], "1")
    assert not (home / "staging").exists() and len(list((home / "releases").iterdir())) == 1
    tags = loop["registry"].version(MODEL, "2").tags
    assert (
        tags[f"device.{ORT_PROFILE}.status"] == "rejected"
        and reason.split(":")[0] in tags[f"device.{ORT_PROFILE}.reason"]
    )


def _downloading(home: Path) -> bool:
    return (home / "staging").exists()


def _checking(home: Path) -> bool:
    """Swapped in, reference check not finished: ``state.json`` holds the links to restore."""
    try:
        return bool(json.loads((home / "state.json").read_text()).get("pending"))
    except (OSError, ValueError):
        return False


@pytest.mark.parametrize("moment", [_downloading, _checking], ids=["while-downloading", "after-swap-while-checking"])
def test_a_pull_killed_mid_way_leaves_the_device_running_what_it_had(loop, moment, tmp_path):
    home = tmp_path / "device"
    _pull(loop, home, ORT_PROFILE)  # runs version 2 (the champion) ...
    loop["registry"].set_alias(MODEL, CHAMPION, "1")  # ... and is told to go back to 1
    try:
        before = status(home)
        args = [sys.executable, "-m", "edgesr.cli", "device", "pull", "--profile", ORT_PROFILE, "--home", str(home)]
        args += ["--params", str(loop["root"] / "params.yaml"), "--registry", loop["uri"], "--device-id", "killed"]
        process = subprocess.Popen(args, cwd=loop["root"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not moment(home):
            assert process.poll() is None, f"the pull ended before the moment {moment.__name__}"
            time.sleep(0.001)
        process.kill()
        process.wait()
        after = status(home)  # rolls back a swap whose check never finished, discards the download
        assert (after["current"], after["previous"], after["version"]) == (before["current"], before["previous"], "2")
        assert not (home / "staging").exists()
        assert _pull(loop, home, ORT_PROFILE)["version"] == "1"  # the next pull installs it
    finally:
        loop["registry"].set_alias(MODEL, CHAMPION, "2")


def test_a_signed_bundle_failing_its_reference_check_is_rolled_back(loop):
    home = loop["homes"] / OV_PROFILE  # at version 2, previous 1
    before = status(home)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", loop["uri"])
        params = project_params(loop["root"], tile=64)
        register.run(params, loop["root"])
        assert promote(params, MODEL, loop["registry"], root=loop["root"]).promoted
    # a build whose model does not produce what its manifest says, signed with the trusted key
    with tampered(_served_bundle(loop, "3", OV_PROFILE)) as bundle:
        manifest = json.loads((bundle / MANIFEST).read_text())
        manifest["reference"]["psnr_y"] += 1.0
        for name in ("files", "signed_by"):
            del manifest[name]
        write_signed_manifest(bundle, manifest, load_private_key(loop["root"] / "keys"))
        with pytest.raises(SmokeCheckFailedError, match="failed its reference check on this device"):
            _pull(loop, home, OV_PROFILE)
    after = status(home)
    assert (after["current"], after["previous"], after["version"]) == (before["current"], before["previous"], "2")
    assert after["last_pull"]["result"].startswith("rolled back: reference PSNR-Y")
    assert sorted(p.name.split("-")[1] for p in (home / "releases").iterdir()) == ["v1", "v2"]
    tags = loop["registry"].version(MODEL, "3").tags
    assert tags[f"device.{OV_PROFILE}.status"] == "rolled back" and "manifest" in tags[f"device.{OV_PROFILE}.reason"]
