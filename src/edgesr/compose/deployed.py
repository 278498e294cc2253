"""The composed model ready to run: each branch in its deployed form, the router the ``compose`` stage made.

Branches are the files of the ``export`` (fp32) and ``quantize`` (int8) stages, run a batch of patches
per call (:mod:`edgesr.compose.runners`); an int8 model that failed the quantize stage's checks is
refused unless ``checked`` is False (:func:`edgesr.deploy.runners.deployed_source`, as ``edgesr upscale``). The router
files (``<paths.compose>/classifier.pt``, ``edge_table.json``) record the branches they were made for,
so a changed ``compose.branches`` cannot silently pair a router with other branches. The classifier
runs in fp32 on the branches' runtime where it can (OpenVINO), else in PyTorch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgesr.artifacts import CLASSIFIER_FILE, EDGE_TABLE_FILE, compose_file
from edgesr.compose.classifier import PatchClassifier
from edgesr.compose.compiled import OpenVINOClassifier
from edgesr.compose.composed import ComposedModel, Router, require_two_branches
from edgesr.compose.edge import EdgeRouter, EdgeTable
from edgesr.compose.runners import (
    BatchRunner,
    onnxruntime_batch_runner,
    openvino_batch_runner,
    torch_batch_runner,
)
from edgesr.compose.settings import RouterName
from edgesr.config import Params
from edgesr.deploy.runners import deployed_source
from edgesr.errors import UsageError

__all__ = ["branch_runner", "classifier_router", "composed_model", "load_router", "router_file_contents"]


def branch_runner(
    params: Params, name: str, runtime: str, precision: str, root: Path = Path("."), *, checked: bool = True
) -> BatchRunner:
    """``name``'s deployed form (:func:`~edgesr.deploy.runners.deployed_source`), ``compose.chunk`` patches
    per call."""
    cfg, threads = params.compose, params.deploy.threads
    source = deployed_source(params, name, runtime, precision, root, checked=checked)
    if isinstance(source, nn.Module):
        torch.set_num_threads(threads)
        return torch_batch_runner(source, cfg.chunk)
    if runtime == "openvino":
        return openvino_batch_runner(source, threads, cfg.chunk, cfg.patch)
    return onnxruntime_batch_runner(source, threads, cfg.chunk)


def router_file_contents(params: Params, kind: RouterName, root: Path = Path(".")) -> dict[str, Any]:
    """The saved router (``classifier.pt``: state dict; ``edge_table.json``: the table) and its branch names,
    checked against ``compose.branches``."""
    if kind == "classifier":
        saved = torch.load(compose_file(params, CLASSIFIER_FILE, root), weights_only=True)
    else:
        saved = json.loads(compose_file(params, EDGE_TABLE_FILE, root).read_text())
    branches = params.compose_branches()
    if saved["branches"] != branches:
        raise UsageError(
            f"the {kind} router was made for the branches {saved['branches']}, but compose.branches resolves to "
            f"{branches}; rerun `dvc repro compose`"
        )
    return saved


def classifier_router(classifier: PatchClassifier, runtime: str, threads: int) -> Router:
    """The classifier on the branches' runtime: its features compiled by OpenVINO when the branches run there
    (one thread pool, :mod:`edgesr.compose.compiled`), else in PyTorch."""
    return OpenVINOClassifier(classifier, threads) if runtime == "openvino" else classifier.eval()


def load_router(
    params: Params, kind: RouterName, runtime: str, root: Path = Path("."), eta: float | None = None
) -> Router:
    """The ``compose`` stage's router for branches on ``runtime``: ClassSR's trained classifier, or ARM's edge
    table at ``eta`` (default ``compose.edge.eta``)."""
    saved = router_file_contents(params, kind, root)
    if kind == "classifier":
        classifier = PatchClassifier(len(saved["branches"]))
        classifier.load_state_dict(saved["state_dict"])
        return classifier_router(classifier, runtime, params.deploy.threads)
    return EdgeRouter(EdgeTable(**saved["table"]), params.compose.edge.eta if eta is None else eta)


def composed_model(
    params: Params, runtime: str, precision: str, router: RouterName | None = None, root: Path = Path(".")
) -> ComposedModel:
    """The composed model of ``compose.branches`` on ``runtime`` / ``precision`` behind ``router``
    (default ``compose.router``)."""
    names = params.compose_branches()
    require_two_branches(len(names))
    cfg = params.compose
    torch.set_num_threads(params.deploy.threads)  # a classifier in PyTorch (branches not on OpenVINO)
    branches = [branch_runner(params, name, runtime, precision, root) for name in names]
    return ComposedModel(
        branches, load_router(params, router or cfg.router, runtime, root), params.scale, cfg.patch, cfg.stride
    )
