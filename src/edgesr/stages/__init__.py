"""DVC stage entry points: each loads its config section, calls library code, writes what dvc.yaml declares.

Every stage is a plain function (``run(params, root)``) that tests call without DVC or Prefect; the
``edgesr <stage>`` CLI calls it with ``params.yaml`` of the working directory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgesr.data.prepare import MANIFEST_NAME

__all__ = ["data_hash"]


def data_hash(prepared_dir: Path) -> str:
    """sha256 (16 hex) of the prepared data's manifest, the MLflow ``data_hash`` tag."""
    manifest = prepared_dir / MANIFEST_NAME
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: run the prepare stage first (`dvc repro prepare`)")
    return hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
