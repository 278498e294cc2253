"""``params.yaml``: the single source of knobs, validated once into typed, frozen models.

The root :class:`Params` mirrors the file's top-level sections. Stages receive only their own
section. Profiles (``profiles/<name>.yaml``: ``smoke`` for tests, ``paper`` for a GPU) are partial
files deep-merged over ``params.yaml``; :func:`write_params` materialises a merged file so that DVC,
which reads ``params.yaml`` itself, sees the same values.

A wrong key or value stops with :class:`ConfigError`, whose message names the key path, the bad
value and what is allowed, e.g. ``train.loss.type = 'l2': Input should be 'l1' or 'charbonnier'``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator

from edgesr.data.settings import PrepareConfig
from edgesr.models import ModelConfig
from edgesr.schema import StrictModel
from edgesr.train.settings import TrainConfig

__all__ = [
    "ConfigError",
    "EvaluateConfig",
    "ModelEntry",
    "Params",
    "PathsConfig",
    "TrackingConfig",
    "load_params",
    "params_hash",
    "resolve_profile",
    "write_params",
]

PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"


class ConfigError(ValueError):
    """A ``params.yaml`` (or profile) problem a user can fix; the message says which key and how."""


class PathsConfig(StrictModel):
    """Where every stage reads and writes, relative to the project root. Defined here once;
    ``dvc.yaml`` interpolates the same keys (``${paths.prepared}``)."""

    prepared: str = "data/prepared"
    models: str = "models/train"
    metrics: str = "metrics"
    plots: str = "plots"


class EvaluateConfig(StrictModel):
    """The ``evaluate`` stage: one table of every trained model (plus the bicubic reference)."""

    latency_input_hw: tuple[int, int] = (360, 640)
    latency_threads: int = Field(2, ge=1)
    latency_repeats: int = Field(5, ge=1)
    latency_warmup: int = Field(2, ge=0)
    complexity_output_hw: tuple[int, int] = (720, 1280)


class TrackingConfig(StrictModel):
    """MLflow conventions (DESIGN.md, MLOps): one experiment per pipeline."""

    experiment: str = "edgesr"
    sample_crop: int = Field(96, ge=16, description="HR side of the LR-bicubic / SR / HR crops logged")


class ModelEntry(StrictModel):
    """One model the pipeline trains: its architecture and the keys of ``train`` it overrides.

    The overrides let each baseline keep its paper's recipe (XLSR: triangular cyclic learning rate,
    paper 003 Sec. 4.2) while sharing everything else, above all the iteration budget.
    """

    arch: ModelConfig
    train: dict[str, Any] = Field(default_factory=dict)


class Params(StrictModel):
    """Root of ``params.yaml``."""

    scale: Literal[2, 3, 4] = 2
    paths: PathsConfig = PathsConfig()
    prepare: PrepareConfig = PrepareConfig()
    train: TrainConfig
    models: dict[str, ModelEntry]
    evaluate: EvaluateConfig = EvaluateConfig()
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("models")
    @classmethod
    def _trainable_models_only(cls, models: dict[str, ModelEntry], info: ValidationInfo) -> dict[str, ModelEntry]:
        if not models:
            raise ValueError("list at least one model to train, e.g. `models: {fsrcnn: {arch: {type: fsrcnn}}}`")
        for name, entry in models.items():
            if entry.arch.type == "bicubic":
                raise ValueError(
                    f"'{name}' is bicubic, which has nothing to train; evaluate always adds the bicubic "
                    "reference row, so remove it from `models`"
                )
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"model name '{name}' must use letters, digits, '_' or '-' (it names a folder)")
            if "train" in info.data:  # absent when `train` itself failed validation
                _merged_train(info.data["train"], entry.train, f"models.{name}.train")
        return models

    def train_config(self, name: str) -> TrainConfig:
        """``train`` with the overrides of ``models[name].train`` merged over it."""
        return _merged_train(self.train, self.models[name].train, f"models.{name}.train")


def _merged_train(base: TrainConfig, overrides: Mapping[str, Any], where: str) -> TrainConfig:
    try:
        return TrainConfig.model_validate(_deep_merge(base.model_dump(), overrides))
    except ValidationError as err:
        problems = "; ".join(
            f"{where}.{'.'.join(str(p) for p in item['loc'])} = {item.get('input')!r}: {item['msg']}"
            for item in err.errors()
        )
        raise ValueError(problems) from None


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, section by section. A section whose ``type`` changes (a schedule, a
    loss, an architecture) is replaced whole: the old type's keys mean nothing to the new one."""
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if (
            isinstance(value, Mapping)
            and isinstance(old, dict)
            and value.get("type", old.get("type")) == old.get("type")
        ):
            merged[key] = _deep_merge(old, value)
        else:
            merged[key] = value
    return merged


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


def resolve_profile(profile: str | Path) -> Path:
    """``smoke`` -> ``profiles/smoke.yaml``; a path is taken as is."""
    path = Path(profile)
    if path.suffix in {".yaml", ".yml"}:
        return path
    candidate = PROFILES_DIR / f"{profile}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown profile '{profile}'; known profiles: {', '.join(known)} (or a .yaml path)")
    return candidate


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys a model accepts at ``loc`` (for 'unknown key' messages); empty if not resolvable."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration ({err.error_count()} problem(s)):"]
    for item in err.errors():
        loc = item["loc"]
        key = ".".join(str(p) for p in loc)
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(Params, loc)
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"  - unknown key '{key}'{hint}")
        elif item["type"] == "missing":
            lines.append(f"  - missing key '{key}'")
        elif isinstance(item.get("input"), dict | list):
            lines.append(f"  - {key}: {item['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"  - {key} = {item.get('input')!r}: {item['msg']}")
    return "\n".join(lines)


def load_params(path: str | Path = "params.yaml", profile: str | Path | None = None) -> Params:
    """Load and validate ``params.yaml`` with an optional profile merged over it."""
    path = Path(path)
    data = _read_yaml(path)
    source = str(path)
    if profile is not None:
        profile_path = resolve_profile(profile)
        data = _deep_merge(data, _read_yaml(profile_path))
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
    path = Path(path)
    text = yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path
