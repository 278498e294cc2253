"""The MLflow model registry service: the one place that reads and writes registered models.

MLflow 3 only (DESIGN.md, MLOps): a version's files are the artifacts of an MLflow *logged model* (the
``model_id`` the version points to), its state is its tags, and ``candidate`` / ``champion`` are
aliases; the deprecated stages API is never used. Works the same on a ``sqlite:///`` registry and on
a ``mlflow server`` over HTTP (its artifacts proxied, ``mlflow-artifacts:/``), which is how a device
talks to it.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from pathlib import Path

# Telemetry off whoever starts us (DESIGN.md, MLOps); set before mlflow reads its environment.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

import mlflow.artifacts  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities.model_registry import ModelVersion  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

from edgesr.errors import MissingInputError, UserError  # noqa: E402

__all__ = ["CANDIDATE", "CHAMPION", "ModelVersion", "Registry", "RegistryUnavailableError"]

CANDIDATE, CHAMPION = "candidate", "champion"
# what MLflow answers for a registered model or an alias that does not exist
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class RegistryUnavailableError(UserError, ConnectionError):
    """The registry (its server, or the files it serves) could not be read."""


class Registry:
    """Registered models of one MLflow tracking URI."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def register(self, name: str, folder: Path, run_id: str, tags: Mapping[str, str]) -> ModelVersion:
        """A new version of ``name`` holding the files of ``folder``, made by run ``run_id``, alias ``candidate``."""
        run = self.client.get_run(run_id)
        logged = self.client.create_logged_model(
            run.info.experiment_id, name=name, source_run_id=run_id, tags=dict(tags), model_type="edgesr-sr"
        )
        self.client.log_model_artifacts(logged.model_id, str(folder))
        self.client.finalize_logged_model(logged.model_id, "READY")
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, description="edgesr super-resolution model (issue 12)")
        version = self.client.create_model_version(
            name, source=f"models:/{logged.model_id}", run_id=run_id, tags=dict(tags), model_id=logged.model_id
        )
        self.client.set_registered_model_alias(name, CANDIDATE, version.version)
        return self.client.get_model_version(name, version.version)

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first (none when the model is not registered)."""
        return sorted(self.client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))

    def latest(self, name: str) -> ModelVersion | None:
        """The newest version of ``name``; None when it has none."""
        return next(reversed(self.versions(name)), None)

    def by_alias(self, name: str, alias: str) -> ModelVersion | None:
        """The version ``alias`` points to; None when the model or the alias does not exist."""
        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException as err:
            if err.error_code in _NOT_FOUND:
                return None
            raise RegistryUnavailableError(
                f"could not ask {self.uri} for {name}@{alias} ({err}); check that the registry server is running"
            ) from err

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` of ``name`` at ``version`` (moving it from wherever it pointed)."""
        self.client.set_registered_model_alias(name, alias, version)

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        """Set (or overwrite) tags of one version."""
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)

    def version(self, name: str, version: str) -> ModelVersion:
        """One version of ``name``, with its tags and aliases."""
        return self.client.get_model_version(name, version)

    @staticmethod
    def _model_id(version: ModelVersion) -> str:
        """The logged model holding the version's files (its ``models:/<model_id>`` source)."""
        model_id = version.model_id or (version.source or "").removeprefix("models:/")
        if not model_id.startswith("m-"):
            raise MissingInputError(
                f"{version.name} version {version.version} (source {version.source}) is not a logged model: it was "
                "not registered by `edgesr register`; register a new version"
            )
        return model_id

    def _location(self, version: ModelVersion) -> str:
        return self.client.get_logged_model(self._model_id(version)).artifact_location

    def has(self, version: ModelVersion, path: str) -> bool:
        """Whether ``path`` (a file or folder; ``.``: all of them) is among the version's files."""
        if path == ".":
            return True
        parent = posixpath.dirname(path) or None
        return path in {info.path for info in self.client.list_logged_model_artifacts(self._model_id(version), parent)}

    def download(self, version: ModelVersion, path: str, destination: Path) -> Path:
        """Download ``path`` (a file or folder of the version's files; ``.``: all) into ``destination``; returns
        its copy."""
        if not self.has(version, path):
            raise MissingInputError(f"{version.name} version {version.version} has no {path} in the registry")
        Path(destination).mkdir(parents=True, exist_ok=True)
        uri = f"{self._location(version)}/{path}"
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(destination), tracking_uri=self.uri
            )
        except (MlflowException, OSError) as err:
            raise RegistryUnavailableError(
                f"could not download {path} of {version.name} version {version.version} from {self.uri} ({err}); "
                "check that the registry server is running and reachable, then retry"
            ) from err
        return Path(local)

    def publish(self, version: ModelVersion, folder: Path, path: str) -> None:
        """Upload ``folder`` as ``path`` among the version's files."""
        self.client.log_model_artifacts(self._model_id(version), str(folder), path)
