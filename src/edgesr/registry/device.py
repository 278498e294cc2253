"""An edge device's side of the loop: pull the champion's bundle, verify, swap, check, roll back, report.

A device home (``--home DIR``)::

    releases/<model>-v<version>-<profile>-<id>/   installed bundles (at most the two linked below)
    current -> releases/...                        what the device runs
    previous -> releases/...                       what it ran before; ``current`` returns to it on a failure
    staging/                                       downloads in progress (discarded when interrupted)
    state.json                                     profile, what is installed, its check, the last pull

A pull asks the registry which version ``champion`` points to, downloads that version's bundle for the
device's profile into ``staging``, verifies the manifest's Ed25519 signature with the public key the
device holds and every file's size and sha256 (:func:`edgesr.registry.manifest.verify_bundle`), swaps
``current`` atomically (a symlink renamed over the old one), runs the reference input through the new
model and compares with the manifest; on a failed check ``current`` and ``previous`` go back to what they
were. ``state.json`` marks a swap as pending until its check passed, so a device killed between the swap
and the verdict rolls back on its next command. A rejected bundle never reaches ``releases``. The
outcome is reported to the registry as tags of the version (``device.<id>.*``); the version a device
replaced is tagged ``replaced by version <n>``, so the registry shows which devices run which version.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgesr.data.images import load_rgb8
from edgesr.errors import MissingInputError, UserError
from edgesr.files import write_json
from edgesr.registry.bundle import MODEL_DIR
from edgesr.registry.manifest import MANIFEST, BundleRejectedError, verify_bundle
from edgesr.registry.profiles import profile_runner, reference_result, tile_latency_ms
from edgesr.registry.promote import BUNDLES
from edgesr.registry.settings import DeviceProfile
from edgesr.registry.store import CHAMPION, ModelVersion, Registry

__all__ = ["DeviceBusyError", "DeviceHome", "SmokeCheckFailedError", "default_device_id", "pull", "status"]


class SmokeCheckFailedError(UserError, RuntimeError):
    """An installed bundle whose reference output did not match its manifest: the device rolled back."""


def default_device_id(home: Path) -> str:
    """``<host>-<home folder name>``, in the characters MLflow allows in a tag key."""
    return re.sub(r"[^\w.-]", "_", f"{socket.gethostname()}-{Path(home).resolve().name}")


@dataclass(frozen=True)
class DeviceHome:
    """The folders and links of one device (module docstring)."""

    root: Path

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def previous(self) -> Path:
        return self.root / "previous"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text()) if self.state_file.is_file() else {}

    def target(self, link: Path) -> str | None:
        """The release name a link points to (None: no link)."""
        return os.readlink(link) if link.is_symlink() else None

    def point(self, link: Path, release: str | None) -> None:
        """Make ``link`` point to ``release`` atomically (a new symlink renamed over it); None removes it."""
        if release is None:
            link.unlink(missing_ok=True)
            return
        temporary = link.with_name(f".{link.name}.{uuid.uuid4().hex}")
        temporary.symlink_to(release)
        os.replace(temporary, link)

    def installed(self) -> dict[str, Any] | None:
        """The manifest of what ``current`` runs, None for a new device."""
        manifest = self.current / MANIFEST
        return json.loads(manifest.read_text()) if self.current.is_symlink() and manifest.is_file() else None


class DeviceBusyError(UserError, RuntimeError):
    """Another ``edgesr device pull`` holds the device home."""


@contextmanager
def _exclusive(home: DeviceHome) -> Iterator[bool]:
    """Hold the device home's lock (``.lock``, ``flock``) for the block; yields False when another
    process holds it (a pull in progress), so nothing here touches its staging folder or its swap."""
    with open(home.root / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _recover(home: DeviceHome) -> None:
    """Undo a swap whose check never finished (the device was killed in between)."""
    state = home.state()
    pending = state.get("pending")
    if pending:
        home.point(home.current, pending["current_before"])
        home.point(home.previous, pending["previous_before"])
        state["pending"] = None
        state["last_pull"] = {**state.get("last_pull", {}), "result": "rolled back after an interrupted install"}
        write_json(home.state_file, state)
    shutil.rmtree(home.staging, ignore_errors=True)


def _check(home: DeviceHome, manifest: dict[str, Any], tolerance_db: float) -> dict[str, Any]:
    """Run the reference input through ``current`` and compare with the manifest; also time one tile."""
    fields = {k: v for k, v in manifest["profile"].items() if k != "name"}
    profile = DeviceProfile(**fields)
    runner = profile_runner(home.current / MODEL_DIR, profile)
    reference = manifest["reference"]
    lr, hr = load_rgb8(home.current / reference["input"]), load_rgb8(home.current / reference["ground_truth"])
    contract = manifest["contract"]
    got = reference_result(
        runner, lr, hr, int(manifest["scale"]), profile.tile, contract["overlap"], contract["border"]
    )
    difference = abs(float(got["psnr_y"]) - reference["psnr_y"])
    return {
        "passed": difference <= tolerance_db,
        "psnr_y": got["psnr_y"],
        "expected_psnr_y": reference["psnr_y"],
        "output_hash_matches": got["output_sha256"] == reference["output_sha256"],
        "latency_ms": tile_latency_ms(runner, profile.tile, repeats=3, warmup=1),
    }


def _report(registry: Registry, name: str, version: str, device_id: str, profile: str, **fields: Any) -> None:
    tags = {f"device.{device_id}.{key}": str(value) for key, value in fields.items()}
    tags[f"device.{device_id}.profile"] = profile
    tags[f"device.{device_id}.at"] = datetime.now(UTC).isoformat(timespec="seconds")
    registry.set_tags(name, version, tags)


def _fetch(
    home: DeviceHome, registry: Registry, champion: ModelVersion, profile: str, public_key: Ed25519PublicKey
) -> tuple[Path, dict[str, Any]]:
    """Download the champion's bundle for ``profile`` into ``staging`` and verify it; (its folder, its manifest).

    Whatever fails, ``staging`` is removed; :class:`BundleRejectedError` names why the bundle is refused.
    """
    model, version = champion.name, str(champion.version)
    path = f"{BUNDLES}/{profile}"
    if not registry.has(champion, path):
        raise MissingInputError(
            f"{model} version {version} has no bundle for profile '{profile}': add the profile to "
            "registry.profiles and promote a new candidate"
        )
    try:
        bundle = registry.download(champion, path, home.staging / uuid.uuid4().hex)
        manifest = verify_bundle(bundle, public_key)
        expected = (model, version, profile)
        found = (manifest["registered_model"], manifest["version"], manifest["profile"]["name"])
        if found != expected:
            raise BundleRejectedError(f"the bundle is for {found}, not for the champion {expected}")
    except BaseException:  # an interrupted, failed or rejected download leaves nothing behind
        shutil.rmtree(home.staging, ignore_errors=True)
        raise
    return bundle, manifest


def _check_reason(home: DeviceHome, manifest: dict[str, Any], tolerance_db: float) -> tuple[dict[str, Any], str | None]:
    """The reference check of what ``current`` runs and why it failed (None: it passed)."""
    try:
        check = _check(home, manifest, tolerance_db)
    except Exception as err:  # a model the runtime cannot load or run is rolled back all the same
        return {"passed": False}, f"the reference run failed: {type(err).__name__}: {err}"
    if check["passed"]:
        return check, None
    return check, f"reference PSNR-Y {check['psnr_y']:.3f} dB, manifest {check['expected_psnr_y']:.3f} dB"


def pull(
    home_dir: Path,
    profile: str,
    model: str,
    registry: Registry,
    public_key: Ed25519PublicKey,
    tolerance_db: float,
    device_id: str | None = None,
) -> dict[str, Any]:
    """Install ``model``'s champion bundle for ``profile`` in ``home_dir`` (module docstring); returns the state.

    Raises :class:`BundleRejectedError` (device unchanged) or :class:`SmokeCheckFailedError` (rolled back).
    """
    home = DeviceHome(Path(home_dir))
    home.root.mkdir(parents=True, exist_ok=True)
    with _exclusive(home) as held:
        if not held:
            raise DeviceBusyError(f"another `edgesr device pull` is running in {home.root}: wait for it to finish")
        return _pull(home, profile, model, registry, public_key, tolerance_db, device_id)


def _pull(
    home: DeviceHome,
    profile: str,
    model: str,
    registry: Registry,
    public_key: Ed25519PublicKey,
    tolerance_db: float,
    device_id: str | None,
) -> dict[str, Any]:
    """:func:`pull` with the device home's lock held."""
    _recover(home)
    _remove_unlinked(home)  # a release an interrupted pull left behind
    device_id = device_id or default_device_id(home.root)
    champion = registry.by_alias(model, CHAMPION)
    if champion is None:
        raise MissingInputError(f"{model} has no '{CHAMPION}' in the registry at {registry.uri}: promote one first")
    version = str(champion.version)  # an int from a sqlite registry, a string over HTTP
    state, installed = home.state(), home.installed()

    def record(result: str, **fields: Any) -> None:
        """The outcome in ``state.json`` (with ``fields``) and as tags of the version in the registry."""
        write_json(
            home.state_file, {**state, **fields, "last_pull": {"at": _now(), "version": version, "result": result}}
        )
        if result != "up to date":
            tags = {"status": result.split(":")[0], **report}
            _report(registry, model, version, device_id, profile, **tags)

    report: dict[str, str] = {}
    if (
        installed is not None
        and (installed["registered_model"], installed["version"]) == (model, version)
        and (installed["profile"]["name"] == profile)
    ):
        record("up to date")
        return home.state()
    try:
        bundle, manifest = _fetch(home, registry, champion, profile, public_key)
    except BundleRejectedError as err:
        report["reason"] = str(err)
        record(f"rejected: {err}")
        raise
    release = f"{model}-v{version}-{profile}-{uuid.uuid4().hex[:8]}"
    home.releases.mkdir(exist_ok=True)
    bundle.rename(home.releases / release)
    shutil.rmtree(home.staging, ignore_errors=True)
    before = {"current_before": home.target(home.current), "previous_before": home.target(home.previous)}
    write_json(home.state_file, {**state, "pending": before})  # until the check passes (see _recover)
    home.point(home.previous, before["current_before"])
    home.point(home.current, f"releases/{release}")
    check, reason = _check_reason(home, manifest, tolerance_db)
    if reason is not None:
        home.point(home.current, before["current_before"])
        home.point(home.previous, before["previous_before"])
        shutil.rmtree(home.releases / release)
        report["reason"] = reason
        record(f"rolled back: {reason}", pending=None)
        raise SmokeCheckFailedError(
            f"{model} version {version} failed its reference check on this device ({reason}); "
            f"rolled back to {before['current_before'] or 'nothing'}"
        )
    state = {"device_id": device_id, "profile": profile, "model": model, "version": version, "release": release}
    report["latency_ms"] = f"{check['latency_ms']:.2f}"
    report["check"] = (
        f"psnr_y {check['psnr_y']:.3f} (manifest {check['expected_psnr_y']:.3f}), "
        f"output hash {'matches' if check['output_hash_matches'] else 'differs'}"
    )
    record("installed", installed_at=_now(), check=check, pending=None)
    if installed and installed["registered_model"] == model:  # the registry no longer lists it as running here
        replaced = f"replaced by version {version}"
        _report(registry, model, installed["version"], device_id, installed["profile"]["name"], status=replaced)
    _remove_unlinked(home)
    return home.state()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _remove_unlinked(home: DeviceHome) -> None:
    """Delete releases neither ``current`` nor ``previous`` points to."""
    if not home.releases.is_dir():
        return
    linked = {Path(t).name for t in (home.target(home.current), home.target(home.previous)) if t}
    for release in home.releases.iterdir():
        if release.name not in linked:
            shutil.rmtree(release)


def status(home_dir: Path) -> dict[str, Any]:
    """What the device runs (after rolling back an interrupted install): state, current and previous."""
    home = DeviceHome(Path(home_dir))
    if not home.root.is_dir():
        raise MissingInputError(f"{home.root} is not a device home: run `edgesr device pull --home {home.root}` first")
    with _exclusive(home) as held:
        if held:  # a pull in progress owns its pending swap: only read
            _recover(home)
    installed = home.installed()
    return {
        **home.state(),
        "pull_in_progress": not held,
        "current": home.target(home.current),
        "previous": home.target(home.previous),
        "running": None if installed is None else {k: installed[k] for k in ("registered_model", "version", "scale")},
    }
