"""The schema of ``params.yaml``: the root :class:`Params` and the sections that belong to no package.

Each package's section lives in its own ``settings.py`` (``data``, ``train``, ``search``, ``deploy``,
``quant``; the architectures in :mod:`edgesr.architectures`); :class:`Params` puts them together and
checks that they fit each other. Reading the file, profiles and error reports are
:mod:`edgesr.config`'s. Importing this module does not import PyTorch (tested), so a configuration can
be validated before anything heavy loads.

The merge rule of section overrides (:func:`deep_merge`) and the one-line description of a validation
error (:func:`describe_error`) are here because the per-model ``train`` overrides use them too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator, model_validator

from edgesr.architectures import ModelConfig
from edgesr.artifacts import subnet_name
from edgesr.compose.settings import ComposeConfig
from edgesr.data.settings import PrepareConfig
from edgesr.deploy.settings import DeployConfig
from edgesr.errors import UsageError
from edgesr.quant.settings import QuantizeConfig
from edgesr.registry.settings import RegistryConfig
from edgesr.schema import StrictModel
from edgesr.search.settings import SearchConfig
from edgesr.train.settings import TrainConfig

__all__ = [
    "EvaluateConfig",
    "ModelEntry",
    "Params",
    "PathsConfig",
    "TrackingConfig",
    "deep_merge",
    "describe_error",
]


class PathsConfig(StrictModel):
    """Where every stage reads and writes, relative to the project root. Defined here once;
    ``dvc.yaml`` interpolates the same keys (``${paths.prepared}``)."""

    prepared: str = "data/prepared"
    models: str = "models/train"
    search: str = "models/search"
    retrain: str = "models/retrain"
    metrics: str = "metrics"
    plots: str = "plots"
    deploy: str = "models/deploy"
    fingerprints: str = "data/fingerprints"  # what the configured image folders hold (stage `sources`)
    compose: str = "models/compose"  # the composed model's router (stage `compose`)
    qat: str = "models/qat"  # quantize.mode qat's fine-tuning runs (stage `quantize`), kept for resuming


class EvaluateConfig(StrictModel):
    """The ``evaluate`` stage: one table of every trained model (plus the bicubic reference)."""

    latency_input_hw: tuple[int, int] = (360, 640)
    latency_threads: int = Field(2, ge=1)
    latency_repeats: int = Field(5, ge=1)
    latency_warmup: int = Field(2, ge=0)
    complexity_output_hw: tuple[int, int] = (720, 1280)
    seed_noise_db: float = Field(
        0.05,
        ge=0.0,
        description="seed-to-seed spread of mean PSNR-Y (dB): rows closer on every set are flagged 'within seed noise'",
    )


class TrackingConfig(StrictModel):
    """MLflow conventions (DESIGN.md, MLOps): one experiment per pipeline."""

    experiment: str = "edgesr"
    sample_crop: int = Field(96, ge=16, description="HR side of the LR-bicubic / SR / HR crops logged")


_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?]+$")


class ScheduleConfig(StrictModel):
    """Scheduled retraining (issue 12): ``python -m pipelines.serve`` serves the pipeline flow on ``cron``."""

    cron: str = Field("0 3 * * *", description="five-field cron expression (minute hour day month weekday)")

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, cron: str) -> str:
        fields = cron.split()
        if len(fields) != 5 or not all(_CRON_FIELD.match(field) for field in fields):
            raise ValueError(
                f"schedule.cron {cron!r} is not a five-field cron expression such as '0 3 * * *' "
                "(minute hour day-of-month month day-of-week)"
            )
        return cron


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
    search: SearchConfig = SearchConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    deploy: DeployConfig
    quantize: QuantizeConfig = QuantizeConfig()
    compose: ComposeConfig = ComposeConfig()
    tracking: TrackingConfig = TrackingConfig()
    registry: RegistryConfig = RegistryConfig()
    schedule: ScheduleConfig = ScheduleConfig()

    @field_validator("models")
    @classmethod
    def _trainable_models_only(cls, models: dict[str, ModelEntry], info: ValidationInfo) -> dict[str, ModelEntry]:
        if not models:
            raise ValueError("list at least one model to train, e.g. `models: {fsrcnn: {arch: {type: fsrcnn}}}`")
        for name, entry in models.items():
            if entry.arch.type == "bicubic" or name == "bicubic":
                raise ValueError(
                    f"'{name}' is bicubic, which has nothing to train; evaluate always adds the bicubic "
                    "reference row, so remove it from `models`"
                )
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"model name '{name}' must use letters, digits, '_' or '-' (it names a folder)")
            if "train" in info.data:  # absent when `train` itself failed validation
                _merged_train(info.data["train"], entry.train, f"models.{name}.train")
        return models

    @model_validator(mode="after")
    def _stages_fit_together(self) -> Params:
        if self.scale not in self.prepare.scales:
            raise ValueError(
                f"scale {self.scale} is trained and evaluated but prepare.scales {self.prepare.scales} does not "
                f"make it; add {self.scale} to prepare.scales"
            )
        missing = sorted(set(self.search.retrain.scales) - set(self.prepare.scales))
        if missing:
            raise ValueError(
                f"search.retrain.scales {self.search.retrain.scales} retrains at x{missing} but prepare.scales "
                f"{self.prepare.scales} does not make them; add them to prepare.scales or drop them from retrain"
            )
        runs = [(f"'{name}'", self.train_config(name), self.scale) for name in self.models]
        if self.search.sizes:
            runs.append(("the search", self.search_train_config(), self.scale))
            runs += [("the retraining", self.retrain_train_config(), s) for s in self.search.retrain.scales]
        for what, train, scale in runs:
            hr_patch = train.lr_patch * scale
            if self.prepare.min_hr_size < hr_patch:
                raise ValueError(
                    f"prepare.min_hr_size {self.prepare.min_hr_size} is below the HR patch of {what} "
                    f"(train.lr_patch x scale = {hr_patch}): smaller images would pass prepare and stop training; "
                    f"raise prepare.min_hr_size to at least {hr_patch} or lower train.lr_patch"
                )
        self._check_deployed_names()
        return self

    def subnet_names(self) -> list[str]:
        """The retrained FGNAS subnets at the pipeline's ``scale`` (``fgnas_<size>_x<scale>``)."""
        if self.scale not in self.search.retrain.scales:
            return []
        return [subnet_name(size, self.scale) for size in self.search.sizes]

    def deployable_names(self) -> list[str]:
        """Models that have a trained checkpoint to export (see :func:`edgesr.artifacts.deployable_checkpoint`)."""
        return [*self.models, *self.subnet_names()]

    def registered_names(self) -> list[str]:
        """The models the ``register`` stage registers: ``registry.models``, by default ``deploy.default_model``."""
        return self.registry.models or [self.deploy.default_model]

    def compose_branches(self) -> list[str]:
        """The composed model's branches: ``compose.branches``, or the retrained subnets at ``scale`` when null.

        Checked here, where the composition is used (stage ``compose``, ``edgesr upscale --model composed``),
        not when ``params.yaml`` loads: narrowing ``deploy.models`` must not stop every other command.
        """
        names = list(self.compose.branches) if self.compose.branches is not None else self.subnet_names()
        missing = [name for name in names if name not in self.deploy.models]
        if missing:
            raise UsageError(
                f"compose.branches (null: the retrained subnets) names {', '.join(missing)}, which deploy.models "
                "does not export (the composed model runs each branch's deployed model); add them to deploy.models "
                f"or pick from {', '.join(self.deploy.models)}"
            )
        return names

    def _check_deployed_names(self) -> None:
        unregistrable = [name for name in self.registered_names() if name not in self.deploy.models]
        if unregistrable:
            raise ValueError(
                f"registry.models names {', '.join(unregistrable)}, which is not exported and quantized; "
                f"pick from deploy.models ({', '.join(self.deploy.models)})"
            )
        known = self.deployable_names()
        unknown = [name for name in self.deploy.models if name not in known]
        if unknown:
            raise ValueError(
                f"deploy.models names {', '.join(unknown)}, which no stage trains; pick from {', '.join(known)}"
            )
        for name, layers in self.quantize.ignored_layers.items():
            if name not in self.deploy.models:
                raise ValueError(
                    f"quantize.ignored_layers has '{name}', which is not in deploy.models "
                    f"({', '.join(self.deploy.models)})"
                )
            if not layers:
                raise ValueError(f"quantize.ignored_layers.{name} is empty; list module paths or remove the key")

    def train_config(self, name: str) -> TrainConfig:
        """``train`` with the overrides of ``models[name].train`` merged over it."""
        return _merged_train(self.train, self.models[name].train, f"models.{name}.train")

    def search_train_config(self) -> TrainConfig:
        """``train`` with ``search.train`` merged over it: the supernet search runs."""
        return _merged_train(self.train, self.search.train, "search.train")

    def retrain_train_config(self) -> TrainConfig:
        """``train`` with ``search.retrain.train`` merged over it: the searched subnets, from scratch."""
        return _merged_train(self.train, self.search.retrain.train, "search.retrain.train")


def _merged_train(base: TrainConfig, overrides: Mapping[str, Any], where: str) -> TrainConfig:
    try:
        return TrainConfig.model_validate(deep_merge(base.model_dump(), overrides))
    except ValidationError as err:
        raise ValueError("; ".join(describe_error(TrainConfig, item, f"{where}.") for item in err.errors())) from None


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, section by section. A section whose ``type`` changes (a schedule, a
    loss, an architecture) is replaced whole: the old type's keys mean nothing to the new one; a
    mapping overridden with ``null`` is removed (e.g. a profile drops ``search.sizes.L``), and a ``null``
    for a key that is already gone is a no-op, so applying a profile twice changes nothing."""
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if value is None and (isinstance(old, dict) or key not in merged):  # `key: null` removes it
            merged.pop(key, None)
        elif (
            isinstance(value, Mapping)
            and isinstance(old, dict)
            and value.get("type", old.get("type")) == old.get("type")
        ):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = value
    return merged


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` -> ``X``; ``X | None`` -> ``X``."""
    if get_origin(annotation) is Annotated:
        return _unwrap(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _walk(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, Any]:
    """The key as a user writes it (without pydantic's union tags) and the type found at ``loc``.

    pydantic puts the tag of a discriminated union into the location
    (``models.xlsr.arch.xlsr.output``); the file has no such key, so it is dropped here.
    """
    current: Any = root
    shown: list[str] = []
    for part in loc:
        current = _unwrap(current)
        origin = get_origin(current)
        if origin in (Union, UnionType):
            tagged = {
                m.model_fields["type"].default: m
                for m in get_args(current)
                if isinstance(m, type) and issubclass(m, BaseModel) and "type" in m.model_fields
            }
            if part in tagged:
                current = tagged[part]
                continue
            current = None
        shown.append(str(part))
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field else None
        elif origin is dict:
            current = get_args(current)[1]
        elif origin in (list, tuple):
            current = get_args(current)[0] if get_args(current) else None
        else:
            current = None
    return ".".join(shown), _unwrap(current)


def describe_error(root: type[BaseModel], item: Any, prefix: str = "") -> str:
    """One line for one pydantic error: the key, the bad value and what is allowed."""
    key = prefix + _walk(root, item["loc"])[0]
    if item["type"] == "extra_forbidden":
        _, container = _walk(root, item["loc"][:-1])
        is_model = isinstance(container, type) and issubclass(container, BaseModel)
        hint = f"; allowed keys here: {', '.join(sorted(container.model_fields))}" if is_model else ""
        return f"unknown key '{key}'{hint}"
    if item["type"] == "missing":
        return f"missing key '{key}'"
    if isinstance(item.get("input"), dict | list):  # a check of a whole section: its message says it all
        message = item["msg"].removeprefix("Value error, ")
        return f"{key}: {message}" if key else message
    return f"{key} = {item.get('input')!r}: {item['msg']}"
