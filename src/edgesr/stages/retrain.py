"""Stage ``retrain@<size>-<scale>``: the searched FGNAS subnet trained from scratch (paper 001, Sec. 4.1).

"At other scaling factors, we change the last convolution of the networks searched at a scaling
factor of 2 to generate 3 s^2 channels ... Then, we retrain the networks from scratch." The subnet
is built from ``<paths.search>/<size>/architecture.json`` and trained by the zoo's recipe
(:func:`edgesr.stages.train.train_one`, ``train`` with ``search.retrain.train`` merged over it) into
``<paths.retrain>/<size>-x<scale>/``; its checkpoint's metadata holds the whole architecture, so
``evaluate`` and the deployment stages rebuild it like any zoo model.
"""

from __future__ import annotations

from pathlib import Path

from edgesr.config import ConfigError, Params, subnet_name
from edgesr.models.fgnas import FGNASArchitecture, FGNASConfig
from edgesr.stages.search import ARCHITECTURE_FILE
from edgesr.stages.train import train_one, training_run
from edgesr.train.trainer import TrainResult


def load_architecture(params: Params, size: str, root: Path = Path(".")) -> FGNASArchitecture:
    """The architecture ``search@<size>`` wrote; a clear error when that stage has not run."""
    path = root / params.paths.search / size / ARCHITECTURE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the search first (`dvc repro search@{size}`)")
    return FGNASArchitecture.model_validate_json(path.read_text())


def run(params: Params, size: str, scale: int, root: Path = Path(".")) -> TrainResult:
    """Retrain the subnet of ``search@<size>`` at ``scale`` from scratch."""
    if size not in params.search.sizes:
        raise ConfigError(f"no size '{size}' in `search.sizes`; known: {', '.join(params.search.sizes) or 'none'}")
    if scale not in params.search.retrain.scales:
        raise ConfigError(f"scale {scale} is not in search.retrain.scales {params.search.retrain.scales}")
    bicubic_skip = params.search.supernet_for(size).bicubic_skip
    model_cfg = FGNASConfig(architecture=load_architecture(params, size, root), bicubic_skip=bicubic_skip)
    name, cfg = subnet_name(size, scale), params.retrain_train_config()
    return train_one(training_run(params, f"retrain@{size}-{scale}", name, model_cfg, cfg, scale, "retrain"), root)
