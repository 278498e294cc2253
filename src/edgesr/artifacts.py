"""Every artifact name and path of the pipeline, in one place: what each stage writes and the next one reads.

Paths are relative to the project root (``root``) and built from ``params.yaml`` ``paths``::

    <paths.models>/<name>/{best,last}.pt, history.json      train@<name>         (zoo model)
    <paths.search>/<size>/architecture.json, supernet.pt     search@<size>        (FGNAS, paper 001)
    <paths.retrain>/fgnas_<size>_x<scale>/{best,last}.pt     retrain@<size>-<scale>
    <paths.metrics>/<group>/<name>.json, <paths.plots>/<group>/<name>.csv   every training run
    <paths.plots>/figures/*.png                              figures (curves, crops, architectures)
    <paths.deploy>/fp32/<model>/model.onnx                   ONNX, BatchNorm folded, dynamic H and W  (export)
    <paths.deploy>/fp32/<model>/openvino.xml, .bin           OpenVINO IR, fp32 weights                (export)
    <paths.deploy>/fp32/<model>/openvino_fp16.xml            OpenVINO IR, fp16-compressed weights     (export)
    <paths.deploy>/int8/<model>/model.onnx                   ONNX Runtime static QDQ int8             (quantize)
    <paths.deploy>/int8/<model>/openvino.xml, .bin           NNCF int8 IR                             (quantize)
    <paths.deploy>/int8/<model>/checks.json                  per runtime: deployable, failed checks   (quantize)
    <paths.metrics>/register.json                            model -> registered version, new or not   (register)
    <paths.compose>/classifier.pt, edge_table.json           the composed model's two routers        (compose)

This module imports nothing heavy (no torch, no runtimes), so every stage can depend on it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from edgesr.deploy.settings import ExportRuntime
from edgesr.errors import MissingInputError, UsageError, UserError
from edgesr.quant.overflow import resolve_overflow_fix

if TYPE_CHECKING:
    from edgesr.config import Params

__all__ = [
    "ARCHITECTURE_FILE",
    "BEST_CHECKPOINT",
    "CHECKS_FILE",
    "CLASSIFIER_FILE",
    "EDGE_TABLE_FILE",
    "FILES",
    "HISTORY_FILE",
    "LAST_CHECKPOINT",
    "SUPERNET_FILE",
    "Int8NotDeployableError",
    "RunFolder",
    "TrainingPaths",
    "architecture_file",
    "check_int8_deployable",
    "compose_dir",
    "compose_file",
    "deployable_checkpoint",
    "deployed_file",
    "figures_dir",
    "file_sha256",
    "model_dir",
    "register_file",
    "search_dir",
    "subnet_name",
    "training_paths",
]

BEST_CHECKPOINT, LAST_CHECKPOINT, HISTORY_FILE = "best.pt", "last.pt", "history.json"
ARCHITECTURE_FILE, SUPERNET_FILE = "architecture.json", "supernet.pt"
CHECKS_FILE = "checks.json"
CLASSIFIER_FILE, EDGE_TABLE_FILE = "classifier.pt", "edge_table.json"
FILES: dict[ExportRuntime, str] = {"onnxruntime": "model.onnx", "openvino": "openvino.xml"}
_STAGE = {"fp32": "export", "int8": "quantize"}


def subnet_name(size: str, scale: int) -> str:
    """The name of a retrained FGNAS subnet in folders, tables and ``deploy.models``, e.g. ``fgnas_S_x2``."""
    return f"fgnas_{size}_x{scale}"


@dataclass(frozen=True)
class RunFolder:
    """The files a training run (:func:`edgesr.train.trainer.train`) writes into its folder."""

    out_dir: Path

    @property
    def best(self) -> Path:
        return self.out_dir / BEST_CHECKPOINT

    @property
    def last(self) -> Path:
        return self.out_dir / LAST_CHECKPOINT

    @property
    def history(self) -> Path:
        return self.out_dir / HISTORY_FILE


@dataclass(frozen=True)
class TrainingPaths(RunFolder):
    """Where one training run (``train@<name>``, ``search@<size>`` or ``retrain@<size>-<scale>``) writes:
    its folder, and the metrics file and DVC plot of the stage."""

    metrics_file: Path
    plot_file: Path


_GROUPS = {"models": "train", "search": "search", "retrain": "retrain"}  # paths key -> metrics/plots folder


def training_paths(params: Params, group: str, name: str, root: Path = Path(".")) -> TrainingPaths:
    """``<paths.<group>>/<name>``, ``<paths.metrics>/<folder>/<name>.json`` and ``<paths.plots>/<folder>/<name>.csv``,
    ``group`` one of ``models`` (the zoo, reported under ``train/``), ``search``, ``retrain``."""
    if group not in _GROUPS:
        raise ValueError(f"no training group {group!r}; known: {', '.join(_GROUPS)}")
    paths, folder = params.paths, _GROUPS[group]
    return TrainingPaths(
        root / getattr(paths, group) / name,
        root / paths.metrics / folder / f"{name}.json",
        root / paths.plots / folder / f"{name}.csv",
    )


def search_dir(params: Params, size: str, root: Path = Path(".")) -> Path:
    """``<paths.search>/<size>``: the supernet search of one size."""
    return root / params.paths.search / size


def architecture_file(params: Params, size: str, root: Path = Path(".")) -> Path:
    """The architecture ``search@<size>`` found; FileNotFoundError says which stage makes it."""
    path = search_dir(params, size, root) / ARCHITECTURE_FILE
    if not path.is_file():
        raise MissingInputError(f"{path} not found: run the search first (`dvc repro search@{size}`)")
    return path


def figures_dir(params: Params, root: Path = Path(".")) -> Path:
    """``<paths.plots>/figures``: the pictures of the ``figures`` stage."""
    return root / params.paths.plots / "figures"


def deployable_checkpoint(params: Params, name: str, root: Path = Path(".")) -> Path:
    """The checkpoint to deploy for ``name`` (best validation PSNR): ``<paths.models>/<name>/best.pt`` for
    a zoo model, ``<paths.retrain>/<name>/best.pt`` for a retrained FGNAS subnet (``fgnas_S_x2``)."""
    if name not in params.deployable_names():
        raise UsageError(f"'{name}' is not a trained model; deployable: {', '.join(params.deployable_names())}")
    group = "retrain" if name in params.subnet_names() else "models"
    path = training_paths(params, group, name, root).best
    if not path.is_file():
        stage = f"train@{name}" if name in params.models else "retrain"
        raise MissingInputError(f"{path} not found: train '{name}' first (`dvc repro {stage}`)")
    return path


def register_file(params: Params, root: Path = Path(".")) -> Path:
    """``<paths.metrics>/register.json``: what the ``register`` stage registered (the Prefect flow promotes it)."""
    return root / params.paths.metrics / "register.json"


def compose_dir(params: Params, root: Path = Path(".")) -> Path:
    """``<paths.compose>``: the routers of the composed model (stage ``compose``)."""
    return root / params.paths.compose


def compose_file(params: Params, file_name: str, root: Path = Path(".")) -> Path:
    """A router file of the ``compose`` stage; MissingInputError says how to make it."""
    path = compose_dir(params, root) / file_name
    if not path.is_file():
        raise MissingInputError(f"{path} not found: the composed model is made by `dvc repro compose`")
    return path


def model_dir(deploy_root: Path, precision: str, model: str) -> Path:
    """``<deploy_root>/<precision>/<model>``."""
    return Path(deploy_root) / precision / model


def deployed_file(deploy_root: Path, model: str, runtime: str, precision: str) -> Path:
    """The file ``runtime`` loads for ``model`` at ``precision``; FileNotFoundError says which stage makes it."""
    if runtime not in FILES:
        raise ValueError(f"no deployed file for runtime '{runtime}'; runtimes with files: {', '.join(FILES)}")
    path = model_dir(deploy_root, precision, model) / FILES[runtime]
    if not path.is_file():
        raise MissingInputError(
            f"{path} not found: {model} has no {precision} {runtime} model yet; run `dvc repro {_STAGE[precision]}` "
            f"(and list {model} in deploy.models)"
        )
    return path


def file_sha256(path: Path) -> str:
    """sha256 of a deployed file (``checks.json`` ties each verdict to the file it was measured on)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Int8NotDeployableError(UserError, ValueError):
    """An int8 model that failed the quantize stage's checks (``quantize.limits``)."""


def check_int8_deployable(deploy_root: Path, model: str, runtime: str) -> None:
    """Raise :class:`Int8NotDeployableError` naming the failed checks unless the quantize stage passed ``model``'s
    int8 form on ``runtime`` (its ``checks.json``), that form is still the file it checked, and its weights' grid
    runs unclipped on this CPU (:mod:`edgesr.quant.overflow`)."""
    folder = model_dir(deploy_root, "int8", model)
    path = folder / CHECKS_FILE
    if not path.is_file():
        raise Int8NotDeployableError(
            f"{path} not found: {model}'s int8 model has not been checked; run `dvc repro quantize`"
        )
    verdict = json.loads(path.read_text()).get(runtime)
    if verdict is None:
        raise Int8NotDeployableError(f"{path} has no verdict for {runtime}: add it to quantize.runtimes and rerun")
    checked = verdict.get("sha256")
    # A runtime with a verdict is an export runtime: quantize writes one verdict per quantize.runtimes entry.
    if checked != file_sha256(folder / FILES[cast(ExportRuntime, runtime)]):
        raise Int8NotDeployableError(
            f"{model}'s int8 {runtime} model is not the file the quantize stage checked ({path}); "
            "rerun `dvc repro quantize`"
        )
    checked_for = verdict.get("overflow_fix", "first_layer")  # the pinned choice before quantize.overflow_fix
    if checked_for == "first_layer" and resolve_overflow_fix() == "all_layers":
        raise Int8NotDeployableError(
            f"{model}'s int8 {runtime} model has 8-bit weights (quantize.overflow_fix first_layer), and this CPU has "
            "no VNNI or AMX: its int8 kernels clip bright content in int16 (edgesr.quant.overflow). Rerun `dvc repro "
            "quantize` on this machine (quantize.overflow_fix: auto or all_layers), or use --precision fp32"
        )
    if not verdict["deployable"]:
        raise Int8NotDeployableError(
            f"{model} int8 on {runtime} failed the quantize checks: {'; '.join(verdict['failures'])}. "
            "Use --precision fp32, or change the calibration or quantize.limits and rerun `dvc repro quantize`"
        )
