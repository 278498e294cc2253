"""Stage ``train@<name>``: train one zoo model of ``params.models`` at ``params.scale``.

Writes ``<paths.models>/<name>/{best,last}.pt`` and ``history.json``, ``metrics/train/<name>.json``,
``plots/train/<name>.csv`` (DVC plot of the loss curve) and logs the run to MLflow. Under ``torchrun``
only rank 0 records anything. The recipe is :func:`edgesr.train.run.train_one`; the pictures of the
run are drawn by the ``figures`` stage.
"""

from __future__ import annotations

from pathlib import Path

from edgesr.artifacts import training_paths
from edgesr.config import ConfigError, Params
from edgesr.train.run import TrainingRun, train_one
from edgesr.train.trainer import TrainResult


def run(params: Params, name: str, root: Path = Path(".")) -> TrainResult:
    """Stage ``train@<name>``: train ``params.models[name]`` at ``params.scale``."""
    if name not in params.models:
        raise ConfigError(f"no model '{name}' in params.yaml `models`; known: {', '.join(params.models)}")
    return train_one(
        TrainingRun(
            stage=f"train@{name}",
            name=name,
            model_cfg=params.models[name].arch,
            train_cfg=params.train_config(name),
            scale=params.scale,
            prepared=root / params.paths.prepared,
            paths=training_paths(params, "models", name, root),
            experiment=params.tracking.experiment,
            root=root,
        )
    )
