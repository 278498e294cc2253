"""Stage ``figures``: the pictures of every training run and search, drawn from what those stages wrote.

Kept out of the training stages so that a change to a picture retrains nothing (``plots.py`` is a
dependency of this stage only). Writes to ``<paths.plots>/figures/``:

- ``<name>_training_curves.png`` and ``<name>_sample_crops.png`` (LR-bicubic / SR / HR crops of the
  first validation image) for every zoo model and retrained subnet, from its ``history.json`` and
  ``best.pt``;
- ``search_<size>_architecture.png`` (paper 001 Fig. 4 style) and ``search_<size>_curves.png`` for
  every search size, from its ``architecture.json`` and ``history.json``,

and logs them to MLflow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgesr.artifacts import (
    HISTORY_FILE,
    TrainingPaths,
    architecture_file,
    figures_dir,
    search_dir,
    subnet_name,
    training_paths,
)
from edgesr.config import Params, params_hash
from edgesr.data.bicubic_baseline import bicubic_upscale
from edgesr.data.prepare import data_hash, load_pairs
from edgesr.errors import MissingInputError
from edgesr.inference import super_resolve
from edgesr.models.fgnas import FGNASArchitecture
from edgesr.plots import save_architecture, save_search_curves, save_side_by_side, save_training_curves
from edgesr.tracking import stage_run
from edgesr.train.restore import trained_model


def _training_runs(params: Params, root: Path) -> list[tuple[str, int, TrainingPaths]]:
    """(name, scale, paths) of every zoo model and every retrained subnet."""
    runs: list[tuple[str, int, TrainingPaths]] = [
        (name, params.scale, training_paths(params, "models", name, root)) for name in params.models
    ]
    for size in params.search.sizes:
        for scale in params.search.retrain.scales:
            name = subnet_name(size, scale)
            runs.append((name, scale, training_paths(params, "retrain", name, root)))
    return runs


def _history(path: Path) -> list[dict]:
    """The logged rows of a trainer's ``history.json`` (iteration, loss, val_psnr, ...)."""
    if not path.is_file():
        raise MissingInputError(f"{path} not found: run the training stages first (`dvc repro`)")
    return json.loads(path.read_text())["history"]


def _training_figures(
    params: Params, name: str, scale: int, paths: TrainingPaths, sample: tuple[str, np.ndarray, np.ndarray], out: Path
) -> list[Path]:
    """Training curves and LR-bicubic / SR / HR crops of ``sample`` (name, LR, HR) for one trained model."""
    title = f"{name} x{scale}"
    curves = save_training_curves(_history(paths.history), title, out / f"{name}_training_curves.png")
    image_name, lr, hr = sample
    crops = save_side_by_side(
        bicubic_upscale(lr, scale),
        super_resolve(trained_model(paths.best, scale), lr),
        hr,
        params.tracking.sample_crop,
        f"{title}: {image_name}",
        out / f"{name}_sample_crops.png",
    )
    return [curves, crops]


def _search_figures(params: Params, size: str, out: Path, root: Path) -> list[Path]:
    architecture = FGNASArchitecture.model_validate_json(architecture_file(params, size, root).read_text())
    title = f"FGNAS-{size} x{params.scale}: the searched architecture (Mult-Adds in metrics/evaluate.md)"
    history = _history(search_dir(params, size, root) / HISTORY_FILE)
    return [
        save_architecture(architecture, title, out / f"search_{size}_architecture.png"),
        save_search_curves(history, f"search@{size}", out / f"search_{size}_curves.png"),
    ]


def run(params: Params, root: Path = Path(".")) -> list[Path]:
    """Draw every figure; returns their paths."""
    out = figures_dir(params, root)
    stage_params = {"models": list(params.models), "sizes": list(params.search.sizes), "scale": params.scale}
    with stage_run(
        "figures",
        experiment=params.tracking.experiment,
        params=stage_params,
        params_hash=params_hash(stage_params),
        data_hash=data_hash(root / params.paths.prepared),
        root=root,
    ) as tracker:
        runs = _training_runs(params, root)
        samples = {scale: load_pairs(root / params.paths.prepared, "val", scale)[0] for _, scale, _ in runs}
        pictures = []
        for name, scale, paths in runs:
            pictures += _training_figures(params, name, scale, paths, samples[scale], out)
        for size in params.search.sizes:
            pictures += _search_figures(params, size, out, root)
        for path in pictures:
            tracker.log_artifact(path, "figures")
    return pictures
