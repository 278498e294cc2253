"""Base class for every typed configuration section of ``params.yaml``.

Frozen, strict about unknown keys (``extra="forbid"``), so a typo stops the run at load time with
a message that names the key (see :mod:`edgesr.config`), not deep inside a stage.
"""

from collections.abc import Sequence
from typing import Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")

Scale = Literal[2, 3, 4]
"""An upscaling factor of the pipeline (``scale``, ``prepare.scales``, ``search.retrain.scales``)."""
SCALES: tuple[Scale, ...] = get_args(Scale)


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def distinct_choices(values: list[T], choices: Sequence[str], what: str) -> list[T]:
    """``values`` if it is a non-empty list without repeats; else an error naming the ``choices``."""
    if not values or len(set(values)) != len(values):
        raise ValueError(f"list each {what} once (at least one), from {', '.join(choices)}; got {values}")
    return values
