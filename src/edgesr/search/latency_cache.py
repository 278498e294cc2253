"""The per-machine cache of measured latency tables: one JSON file per machine and runtime fingerprint.

A table is only valid on the machine and runtime it was measured on, so its file name carries a key of
the fingerprint (CPU model and ISA, runtime and version, threads, precision, LR size, grid, kinds);
files live under ``$EDGESR_CACHE_DIR/latency`` or ``~/.cache/edgesr/latency``. A second build with
the same fingerprint reads the file instead of measuring (:func:`edgesr.search.latency_table.build_latency_table`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from edgesr.cpu import cpu_model_and_flags
from edgesr.deploy.microbench import InferencePrecision, runtime_version
from edgesr.deploy.settings import ExportRuntime
from edgesr.search.latency_grid import LatencyTable

__all__ = ["CACHE_ENV", "cache_file", "default_cache_dir", "machine_fingerprint", "read_cached", "read_cached_table"]

CACHE_ENV = "EDGESR_CACHE_DIR"

C = TypeVar("C", bound="_Cached")

_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "neon", "asimd")


def machine_fingerprint(
    runtime: ExportRuntime = "openvino", threads: int = 2, precision: InferencePrecision = "f32"
) -> dict[str, Any]:
    """What makes measured latencies comparable: CPU model and ISA, core count, runtime and version, threads,
    precision, and a oneDNN ISA cap in the environment."""
    cpu, flags = cpu_model_and_flags()
    return {
        "cpu": cpu,
        "isa": sorted(flags & set(_ISA_FLAGS)),
        "logical_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "runtime": runtime,
        "runtime_version": runtime_version(runtime),
        "threads": threads,
        "precision": precision,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),  # a cap slows OpenVINO (edgesr.kernels)
    }


def default_cache_dir() -> Path:
    """``$EDGESR_CACHE_DIR/latency`` when set, else ``$XDG_CACHE_HOME/edgesr/latency`` (``~/.cache``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / "latency"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "edgesr" / "latency"


def cache_file(cache_dir: str | os.PathLike[str] | None, prefix: str, fingerprint: dict[str, Any]) -> tuple[Path, str]:
    """The file ``<cache_dir>/<prefix>-<key>.json`` of a ``fingerprint`` (prefix: the runtime of a table,
    ``network`` for a whole-network model), and its key."""
    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return folder / f"{prefix}-{key}.json", key


class _Cached(Protocol):
    meta: dict[str, Any]


def read_cached(
    path: Path, fingerprint: dict[str, Any], load: Callable[[dict[str, Any]], C], what: str = "latency table"
) -> C | None:
    """The cached object ``load(json)`` (a table or a whole-network model), or None: no file, or (with a
    warning naming the file) one that cannot be read or belongs to another fingerprint."""
    if not path.is_file():
        return None
    try:
        cached = load(json.loads(path.read_text(encoding="utf-8")))
        if cached.meta.get("fingerprint") != fingerprint:
            raise ValueError("its fingerprint does not match this machine / runtime / grid")
    except (OSError, ValueError, KeyError, TypeError) as error:  # JSONDecodeError is a ValueError
        warnings.warn(f"{what} cache {path} is unusable ({error}): measuring it again", stacklevel=2)
        return None
    cached.meta["from_cache"] = str(path)
    return cached


def _measured_with(table: LatencyTable) -> tuple[int, int]:
    """(rounds, repeats) a cached table was measured with (KeyError / ValueError when it does not say)."""
    return int(table.meta["rounds"]), int(table.meta["repeats"])


def read_cached_table(path: Path, fingerprint: dict[str, Any], rounds: int, repeats: int) -> LatencyTable | None:
    """The cached table, or None; it must also have been measured with at least ``rounds`` rounds of
    ``repeats`` repeats (else a warning, and it is measured again)."""

    def load(data: dict[str, Any]) -> LatencyTable:
        table = LatencyTable.from_dict(data)
        _measured_with(table)  # a table that does not say how it was measured is unusable
        return table

    table = read_cached(path, fingerprint, load)
    if table is None:
        return None
    cached = _measured_with(table)
    if cached[0] < rounds or cached[1] < repeats:
        warnings.warn(
            f"{path} was measured with rounds, repeats = {cached}, fewer than the {(rounds, repeats)} asked for: "
            "measuring again",
            stacklevel=2,
        )
        return None
    return table
