"""An edge bundle's ``manifest.json`` and its Ed25519 signature ``manifest.sig``: written and verified.

The manifest lists every other file of the bundle with its size and sha256, so one signature over the
manifest's bytes covers them all. :func:`verify_bundle` is what a device runs before it installs
anything: unsigned, signed by another key, tampered, truncated, missing or extra files are each
rejected with a message that names the problem.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgesr.artifacts import file_sha256
from edgesr.errors import UserError
from edgesr.files import atomic_write
from edgesr.registry.signing import key_id, signature_is_valid

__all__ = ["MANIFEST", "SIGNATURE", "BundleRejectedError", "file_entries", "verify_bundle", "write_signed_manifest"]

MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"


class BundleRejectedError(UserError, ValueError):
    """A bundle a device must not install; the message says why."""


def file_entries(folder: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``folder`` except the top-level manifest and its signature: relative path -> size and
    sha256 (a ``manifest.json`` deeper down is an ordinary file, listed and checked like any other)."""
    unsigned = {Path(folder) / MANIFEST, Path(folder) / SIGNATURE}
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p not in unsigned)
    return {
        path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        for path in files
    }


def write_signed_manifest(folder: Path, manifest: Mapping[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Write ``manifest`` plus the files of ``folder`` and the signing key's id, then its signature."""
    full = {**manifest, "files": file_entries(folder), "signed_by": key_id(key.public_key())}
    data = (json.dumps(full, indent=2, sort_keys=True) + "\n").encode()
    atomic_write(Path(folder) / MANIFEST, lambda temporary: temporary.write_bytes(data))
    atomic_write(Path(folder) / SIGNATURE, lambda temporary: temporary.write_bytes(key.sign(data)))
    return full


def verify_bundle(folder: Path, public: Ed25519PublicKey) -> dict[str, Any]:
    """The manifest of the bundle in ``folder`` once its signature and every file check out.

    Raises :class:`BundleRejectedError` naming the first problem found.
    """
    folder = Path(folder)
    manifest_path, signature_path = folder / MANIFEST, folder / SIGNATURE
    if not manifest_path.is_file():
        raise BundleRejectedError(f"not a bundle: {MANIFEST} is missing in {folder}")
    if not signature_path.is_file():
        raise BundleRejectedError(f"unsigned bundle: {SIGNATURE} is missing beside {MANIFEST}")
    data = manifest_path.read_bytes()
    if not signature_is_valid(public, data, signature_path.read_bytes()):
        raise BundleRejectedError(
            f"bad signature: {MANIFEST} was not signed by the trusted key {key_id(public)} "
            "(signed by another key, or the manifest was changed after signing)"
        )
    manifest = json.loads(data)
    present = file_entries(folder)
    for name, expected in manifest["files"].items():
        found = present.get(name)
        if found is None:
            raise BundleRejectedError(f"missing file: {name} is listed in the manifest but not in the bundle")
        if found["bytes"] != expected["bytes"]:
            raise BundleRejectedError(
                f"truncated or resized file: {name} has {found['bytes']} bytes, the manifest says {expected['bytes']}"
            )
        if found["sha256"] != expected["sha256"]:
            raise BundleRejectedError(f"tampered file: the sha256 of {name} differs from the manifest's")
    extra = sorted(set(present) - set(manifest["files"]))
    if extra:
        raise BundleRejectedError(f"unexpected files not covered by the signature: {', '.join(extra)}")
    return manifest
