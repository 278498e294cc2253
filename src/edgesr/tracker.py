"""The recording interface that library code may use; :mod:`edgesr.tracking` implements it with MLflow.

Library code (trainer, search) depends only on this protocol, so it runs without MLflow installed
and tests can pass a list-backed recorder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["PrefixedTracker", "Tracker"]


class Tracker(Protocol):
    """What library code may record."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...


@dataclass(frozen=True)
class PrefixedTracker:
    """``tracker`` with ``prefix/`` before every metric name and artifact folder: several runs of library code
    (e.g. one fine-tuning per model) recorded apart in one MLflow run."""

    tracker: Tracker
    prefix: str

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.tracker.log_metrics({f"{self.prefix}/{name}": value for name, value in metrics.items()}, step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.tracker.log_artifact(path, self.prefix if artifact_path is None else f"{self.prefix}/{artifact_path}")
