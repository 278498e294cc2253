"""Stage ``sources`` (``always_changed``): fingerprints of the image folders ``prepare`` and ``quantize`` read.

Writes ``<paths.fingerprints>/prepare.json`` (``prepare.train_sources`` and ``prepare.benchmarks``) and
``<paths.fingerprints>/photo_sets.json`` (``quantize.photo_sets``), see :mod:`edgesr.data.fingerprint`.
A file is rewritten only when its content changes, so the stages that depend on it rerun only then.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgesr.config import Params
from edgesr.data.fingerprint import folders_fingerprint
from edgesr.files import write_text


def _write_if_changed(path: Path, data: dict) -> Path:
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)
    return path


def run(params: Params, root: Path = Path(".")) -> list[Path]:
    """Write both fingerprints; returns their paths."""
    out = root / params.paths.fingerprints
    prepare = [*params.prepare.train_sources, *params.prepare.benchmarks.values()]
    photo_sets = list(params.quantize.photo_sets.values())
    return [
        _write_if_changed(out / "prepare.json", folders_fingerprint(prepare, root)),
        _write_if_changed(out / "photo_sets.json", folders_fingerprint(photo_sets, root)),
    ]
