"""``params.yaml``: the single source of knobs, read and validated once into typed, frozen models.

The models are the schema of :mod:`edgesr.settings` (re-exported here for callers); this module reads
the YAML, merges a profile over it, and turns validation errors into one message. Stages receive only
their own section. Profiles (``profiles/<name>.yaml`` beside ``params.yaml``, e.g. ``smoke`` for tests)
are partial files deep-merged over ``params.yaml``; :func:`write_params` materialises a merged file so
that DVC, which reads ``params.yaml`` itself, sees the same values.

A wrong key or value stops with :class:`ConfigError`, whose message names the key path, the bad
value and what is allowed, e.g. ``train.loss.type = 'l2': Input should be 'l1' or 'charbonnier'``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from edgesr.errors import UserError
from edgesr.files import write_text
from edgesr.settings import Params, deep_merge, describe_error

__all__ = [
    "ConfigError",
    "Params",
    "load_params",
    "params_hash",
    "resolve_profile",
    "write_params",
]


class ConfigError(UserError, ValueError):
    """A ``params.yaml`` (or profile) problem a user can fix; the message says which key and how."""


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found; run from the project root or pass --params PATH")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def resolve_profile(profile: str | Path, params_path: Path = Path("params.yaml")) -> Path:
    """``smoke`` -> ``profiles/smoke.yaml`` beside the params file; a ``.yaml`` path is taken as is."""
    path = Path(profile)
    if path.suffix in {".yaml", ".yml"}:
        return path
    folder = params_path.parent / "profiles"
    candidate = folder / f"{profile}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml")) or ["none"]
        raise ConfigError(
            f"unknown profile '{profile}'; profiles in {folder}: {', '.join(known)} (or pass a .yaml path)"
        )
    return candidate


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration ({err.error_count()} problem(s)):"]
    lines += [f"  - {describe_error(Params, item)}" for item in err.errors()]
    return "\n".join(lines)


def load_params(path: str | Path = "params.yaml", profile: str | Path | None = None) -> Params:
    """Load and validate ``params.yaml`` with an optional profile merged over it."""
    path = Path(path)
    data = _read_yaml(path)
    source = str(path)
    if profile is not None:
        profile_path = resolve_profile(profile, path)
        data = deep_merge(data, _read_yaml(profile_path))
        source = f"{path} + {profile_path}"
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def params_hash(section: BaseModel | Mapping[str, Any]) -> str:
    """A short stable hash of a config section (MLflow tag ``params_hash``)."""
    data = section.model_dump(mode="json") if isinstance(section, BaseModel) else dict(section)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def write_params(params: Params, path: str | Path) -> Path:
    """Write a complete, validated ``params.yaml`` atomically (for DVC runs of a profile)."""
    return write_text(path, yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
