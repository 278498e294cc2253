"""DVC stage entry points: each loads its config section, calls library code, writes what dvc.yaml declares.

Every stage is a plain function (``run(params, root)``) that tests call without DVC or Prefect; the
``edgesr <stage>`` CLI calls it with ``params.yaml`` of the working directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["data_hash", "write_json"]


def data_hash(prepared_dir: Path) -> str:
    """sha256 (16 hex) of the prepared data's manifest, the MLflow ``data_hash`` tag."""
    manifest = prepared_dir / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: run the prepare stage first (`dvc repro prepare`)")
    return hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]


def write_json(data: Any, path: Path) -> Path:
    """Write JSON atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
    os.replace(tmp, path)
    return path
