"""Writing outputs atomically: a temporary file in the target's folder, renamed over the target.

A reader (DVC, MLflow, a resumed run) never sees a half-written file; a failure leaves the previous
file in place and no temporary behind (DESIGN.md: nothing is half-written). Files get ordinary
permissions (0644); ``tempfile.mkstemp`` alone would make them owner-only.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "write_json", "write_text"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object], mode: int = 0o644) -> Path:
    """Call ``write(temporary_path)`` and rename the result, with permissions ``mode``, over ``path``;
    creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike[str], data: Any, indent: int = 2) -> Path:
    """Write ``data`` as JSON atomically, with a final newline."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")
