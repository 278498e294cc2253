"""The recording interface that library code may use; :mod:`edgesr.tracking` implements it with MLflow.

Library code (trainer, search) depends only on this protocol, so it runs without MLflow installed
and tests can pass a list-backed recorder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

__all__ = ["Tracker"]


class Tracker(Protocol):
    """What library code may record."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
