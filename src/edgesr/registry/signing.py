"""Ed25519 signing keys of edge bundles (``edgesr keys init``), with the ``cryptography`` package.

The private key stays in ``registry.keys_dir`` (``signing.key``, PKCS#8 PEM, mode 0600, git-ignored); it is
never logged or bundled. The public key (``signing.pub``) is what a device holds to verify a bundle's
manifest. A key is named by its id: the first 16 hex digits of the sha256 of its 32 raw public bytes.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgesr.errors import MissingInputError, UsageError, UserError
from edgesr.files import atomic_write

__all__ = [
    "PRIVATE_KEY",
    "PUBLIC_KEY",
    "InsecureKeyError",
    "init_keys",
    "key_id",
    "load_private_key",
    "load_public_key",
    "signature_is_valid",
]

PRIVATE_KEY, PUBLIC_KEY = "signing.key", "signing.pub"


class InsecureKeyError(UserError, PermissionError):
    """A private key file that others can read."""


def key_id(public: Ed25519PublicKey) -> str:
    """sha256 (16 hex) of the raw public key: names a key in manifests, tags and messages."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def init_keys(folder: Path, force: bool = False) -> tuple[Path, Path]:
    """Make a new key pair in ``folder``: ``signing.key`` (0600) and ``signing.pub``; returns their paths.

    An existing pair is kept unless ``force``: devices that trust its public key would reject every bundle
    signed with a new one.
    """
    private_path, public_path = Path(folder) / PRIVATE_KEY, Path(folder) / PUBLIC_KEY
    if private_path.exists() and not force:
        raise UsageError(
            f"{private_path} exists; devices trust its public key. Keep it, or pass --force to replace it "
            "(then give every device the new signing.pub)"
        )
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    atomic_write(private_path, lambda temporary: temporary.write_bytes(pem), mode=0o600)
    atomic_write(public_path, lambda temporary: temporary.write_bytes(public))
    return private_path, public_path


def load_private_key(folder: Path) -> Ed25519PrivateKey:
    """The signing key of ``folder``; refused when missing or readable by group or others."""
    path = Path(folder) / PRIVATE_KEY
    if not path.is_file():
        raise MissingInputError(f"{path} not found: make the signing key pair with `edgesr keys init`")
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise InsecureKeyError(f"{path} is readable by others: `chmod 600 {path}`, or make a new pair")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise UsageError(
            f"{path} is not an unencrypted PEM private key ({err}); make one with `edgesr keys init --force`"
        ) from err
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{path} is not an Ed25519 key; make one with `edgesr keys init --force`")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A device's trusted public key (a ``signing.pub`` of ``edgesr keys init``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path} not found: give the device the signing.pub of `edgesr keys init`")
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except ValueError as err:
        raise UsageError(f"{path} is not a PEM public key ({err}); use the signing.pub of `edgesr keys init`") from err
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path} is not an Ed25519 public key; use the signing.pub of `edgesr keys init`")
    return key


def signature_is_valid(public: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``public``'s key's Ed25519 signature of ``data``."""
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False
    return True
