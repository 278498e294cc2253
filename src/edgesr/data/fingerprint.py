"""What the image folders of ``params.yaml`` hold right now, as a small JSON file DVC can watch.

DVC cannot depend on a folder named in ``params.yaml`` that may not exist (``../shared`` is absent on a
fresh clone), so the ``sources`` stage (``always_changed``) rewrites this fingerprint on every
``dvc repro``: the sha256 of every image file in each configured folder (the same listing as
``prepare``), ``missing`` for a folder that does not exist here, and the versions of the packages the
embedded photographs come from. The file changes only when the images change, so ``prepare`` (or
``quantize`` for the photo sets) reruns exactly then, and a second ``dvc repro`` runs nothing else.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import version
from pathlib import Path

from edgesr.data.settings import EMBEDDED
from edgesr.data.sources import image_files

__all__ = ["folders_fingerprint"]

_EMBEDDED_PACKAGES = ("scikit-image", "scikit-learn")


def _folder(folder: Path) -> dict[str, str] | str:
    if not folder.is_dir():
        return "missing"
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in image_files(folder)}


def folders_fingerprint(labels: list[str], root: Path) -> dict[str, object]:
    """``{label: {file name: sha256} | "missing"}`` for image folder ``labels`` (relative to ``root``), and
    ``{"embedded": {package: version}}`` for the embedded photographs."""
    fingerprint: dict[str, object] = {}
    for label in labels:
        if label == EMBEDDED:
            fingerprint[label] = {package: version(package) for package in _EMBEDDED_PACKAGES}
        else:
            path = Path(label).expanduser()
            fingerprint[label] = _folder(path if path.is_absolute() else root / path)
    return fingerprint
