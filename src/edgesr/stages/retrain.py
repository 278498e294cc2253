"""Stage ``retrain@<size>-<scale>``: the searched FGNAS subnet trained from scratch (paper 001, Sec. 4.1).

"At other scaling factors, we change the last convolution of the networks searched at a scaling
factor of 2 to generate 3 s^2 channels ... Then, we retrain the networks from scratch." The subnet
is built from ``<paths.search>/<size>/architecture.json`` and trained by the zoo's recipe
(:func:`edgesr.train.run.train_one`, ``train`` with ``search.retrain.train`` merged over it) into
``<paths.retrain>/fgnas_<size>_x<scale>/``; its checkpoint's metadata holds the whole architecture, so
``evaluate`` and the deployment stages rebuild it like any zoo model.
"""

from __future__ import annotations

from pathlib import Path

from edgesr.artifacts import architecture_file, subnet_name, training_paths
from edgesr.config import ConfigError, Params
from edgesr.models.fgnas import FGNASArchitecture, FGNASConfig
from edgesr.train.run import TrainingRun, train_one
from edgesr.train.trainer import TrainResult


def run(params: Params, size: str, scale: int, root: Path = Path(".")) -> TrainResult:
    """Retrain the subnet of ``search@<size>`` at ``scale`` from scratch."""
    if size not in params.search.sizes:
        raise ConfigError(f"no size '{size}' in `search.sizes`; known: {', '.join(params.search.sizes) or 'none'}")
    if scale not in params.search.retrain.scales:
        raise ConfigError(f"scale {scale} is not in search.retrain.scales {params.search.retrain.scales}")
    architecture = FGNASArchitecture.model_validate_json(architecture_file(params, size, root).read_text())
    bicubic_skip = params.search.supernet_for(size).bicubic_skip
    name = subnet_name(size, scale)
    return train_one(
        TrainingRun(
            stage=f"retrain@{size}-{scale}",
            name=name,
            model_cfg=FGNASConfig(architecture=architecture, bicubic_skip=bicubic_skip),
            train_cfg=params.retrain_train_config(),
            scale=scale,
            prepared=root / params.paths.prepared,
            paths=training_paths(params, "retrain", name, root),
            experiment=params.tracking.experiment,
            root=root,
        )
    )
