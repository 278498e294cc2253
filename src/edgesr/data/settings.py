"""The ``prepare`` section of ``params.yaml``: which images become training, validation and benchmark data.

Sources and benchmark folders are paths relative to the project root (or absolute). The default trains
on the photographs embedded in scikit-image / scikit-learn (:mod:`edgesr.data.sources`), holds two of
them out for validation, and evaluates on Set5 / Set14, which ship with the project in ``data/benchmarks``.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from edgesr.data.sources import EMBEDDED_NAMES
from edgesr.schema import SCALES, Scale, StrictModel

__all__ = ["EMBEDDED", "PrepareConfig"]

EMBEDDED = "embedded"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _duplicates(values: list) -> list:
    return sorted({value for value in values if values.count(value) > 1}, key=str)


class PrepareConfig(StrictModel):
    """How ``edgesr prepare`` builds ``data/prepared`` (layout in :mod:`edgesr.data.prepare`)."""

    train_sources: list[str] = Field(
        default_factory=lambda: [EMBEDDED],
        description=f"'{EMBEDDED}' (photographs shipped in scikit-image / scikit-learn) or image folders",
    )
    val_images: list[str] = Field(
        default_factory=lambda: ["chelsea", "flower"],
        description="names of training images held out for validation (a cat close-up and a flower scene)",
    )
    val_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of each folder source held out for validation, evenly spaced by sorted name",
    )
    benchmarks: dict[str, str] = Field(
        default_factory=lambda: {"Set5": "data/benchmarks/Set5/HR", "Set14": "data/benchmarks/Set14/HR"},
        description="benchmark name -> HR folder; a folder that does not exist is skipped with a message",
    )
    scales: list[Scale] = Field(default_factory=lambda: list(SCALES))
    min_hr_size: int = Field(
        96, ge=1, description="train/val images whose shorter side after mod-crop is smaller are skipped"
    )

    @field_validator("train_sources")
    @classmethod
    def _check_sources(cls, sources: list[str]) -> list[str]:
        if not sources:
            raise ValueError(f"list at least one source: '{EMBEDDED}' or a folder of training images")
        if any(not source.strip() for source in sources):
            raise ValueError(f"a source is an empty string; use '{EMBEDDED}' or a folder path")
        if duplicated := _duplicates(sources):
            raise ValueError(f"sources listed twice: {duplicated}; list each once")
        return sources

    @field_validator("val_images")
    @classmethod
    def _check_val_images(cls, names: list[str]) -> list[str]:
        if duplicated := _duplicates(names):
            raise ValueError(f"validation images listed twice: {duplicated}")
        return names

    @field_validator("benchmarks")
    @classmethod
    def _check_benchmarks(cls, benchmarks: dict[str, str]) -> dict[str, str]:
        for name, folder in benchmarks.items():
            if name in ("train", "val"):
                raise ValueError(f"benchmark name {name!r} is taken by the training split; rename it")
            if not _SAFE_NAME.match(name):
                raise ValueError(
                    f"benchmark name {name!r} names a folder: use letters, digits, '_', '-' or '.', "
                    "starting with a letter or digit"
                )
            if not folder.strip():
                raise ValueError(f"benchmark {name!r} has an empty folder path; give its HR folder")
        return benchmarks

    @field_validator("scales")
    @classmethod
    def _check_scales(cls, scales: list[int]) -> list[int]:
        if not scales:
            raise ValueError("list at least one scale: 2, 3 or 4")
        if duplicated := _duplicates(scales):
            raise ValueError(f"scales listed twice: {duplicated}")
        return sorted(scales)

    @model_validator(mode="after")
    def _check_split(self) -> PrepareConfig:
        # Only the embedded set's names are known before reading folders; folder names are checked by
        # prepare() once it has listed the files.
        if self.train_sources == [EMBEDDED]:
            unknown = [name for name in self.val_images if name not in EMBEDDED_NAMES]
            if unknown:
                raise ValueError(
                    f"val_images {unknown} are not embedded images; choose from {', '.join(EMBEDDED_NAMES)}"
                )
            if len(self.val_images) >= len(EMBEDDED_NAMES):
                raise ValueError("val_images holds out every embedded image; leave some for training")
        if not self.val_images and self.val_fraction == 0:
            raise ValueError(
                "the validation split would be empty: name images to hold out in val_images, or set "
                "val_fraction for folder sources"
            )
        if self.val_fraction > 0 and all(source == EMBEDDED for source in self.train_sources):
            raise ValueError(
                "val_fraction splits folder sources, and train_sources has none; name embedded images to "
                "hold out in val_images instead"
            )
        return self
