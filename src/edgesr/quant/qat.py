"""Quantization-aware fine-tuning (QAT) of an OpenVINO int8 model with NNCF's PyTorch backend (issue 13).

NNCF's QAT recipe: ``nncf.quantize`` on the PyTorch model inserts fake quantizers (symmetric int8
weights per output channel, per-tensor activations with min/max ranges over the calibration patches, as
:mod:`edgesr.quant.openvino_ptq`), the model is fine-tuned with them in the graph (rounding passed straight
through), and ``openvino.convert_model`` turns their FakeQuantize nodes into int8 kernels.

Two things are ours:

- **the objective**: L1 to the HR patch on training crops (the training loss), plus ``distill_weight`` times
  L1 to the fp32 model's own output on calibration-mix patches (:func:`edgesr.quant.calibration.calibration_patches`
  with only re-exposed crops and synthetic flats, edges, ramps and checkerboards, which have no HR). The
  second term keeps the int8 model on the fp32 model where the stress suite checks it.
- **learned ranges**: the quantizers' scales train at their own ``range_lr`` (learned step size, LSQ,
  Esser et al., ICLR 2020), so a range that min/max stretched over rare extreme content can shrink to
  where the signal is. At the weights' learning rate they would not move: a scale of 10 moves 2e-4 a step.

The fixed interpolation skips (``quantize.float_modules``) stay float with the ``Add`` that sums them
(:func:`float_scope`). NNCF's PyTorch backend has only the fast bias correction; the fine-tuning takes its place.

The fine-tuning is a run of the project's trainer (:func:`edgesr.train.trainer.train`): ``best.pt`` / ``last.pt`` /
``history.json`` in its run folder (the ``quantize`` stage's ``<paths.qat>/<model>``, kept by DVC), so an
interrupted fine-tuning resumes; validation PSNR-Y of the fake-quantized model, the loss and the distillation term
go to the history and MLflow. The IR is converted from the last weights, as the schedule ends at 0.

Measured on a 2-core Intel Xeon with AMX (640x360, 2 threads for the timings). The ``cpu-long`` RT subnet
(17.11 G), whose PTQ drop :mod:`edgesr.quant.openvino_ptq` leaves at 0.41 / 0.18 dB on Set5 / Set14: 0.26 / 0.11 with
the defaults (1500 steps, 9.7 min), 32.4 ms against the PTQ model's 31.2. Before the skip's ``Add`` was kept float,
NNCF's PyTorch PTQ alone gave 0.58 / 0.26, 1000 steps with the ranges kept 0.46 / 0.20, with learned ranges 0.34 /
0.15, 1500 steps 0.32 / 0.14. The default S subnet: 0.07 / 0.03 against PTQ's 0.03 / 0.01, so PTQ (full bias
correction, the int8-exact skip) stays the default and QAT is for the models PTQ leaves outside ``quantize.limits``.

NNCF compiles its PyTorch C++ extension (the fake quantizers) with the machine's compiler on first use and gives up
after ``NNCF_EXTENSION_LOAD_TIMEOUT`` seconds, 60 by default: on a busy 2-core AMD EPYC the build took longer and
the fine-tuning failed. A user's setting is kept; otherwise :data:`EXTENSION_BUILD_TIMEOUT_S` applies.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nncf
import numpy as np
import openvino as ov
import torch
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
from nncf.quantization.range_estimator import RangeEstimatorParametersSet
from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph
from torch import Tensor, nn

from edgesr.data.patches import PatchSampler
from edgesr.deploy.export import INPUT_NAME, OUTPUT_NAME, save_openvino
from edgesr.quant.calibration import calibration_patches
from edgesr.quant.openvino_ptq import NNCF_OVERFLOW_FIX
from edgesr.quant.overflow import OverflowFix, resolve_overflow_fix
from edgesr.quant.settings import QatConfig
from edgesr.quant.verify import Pairs
from edgesr.tracker import Tracker
from edgesr.train.distributed import distributed_context
from edgesr.train.run import keep_only_an_unfinished_run
from edgesr.train.settings import CosineSchedule, TrainConfig
from edgesr.train.trainer import train

EXTENSION_BUILD_TIMEOUT_S = 900
"""Seconds NNCF may take to build and load its C++ extension (see the module docstring)."""
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", str(EXTENSION_BUILD_TIMEOUT_S))

__all__ = [
    "DISTILL_METRIC",
    "DistillationObjective",
    "QatResult",
    "fake_quantized",
    "float_scope",
    "quantize_openvino_qat",
]

DISTILL_METRIC = "distill_l1"
"""The history's and MLflow's name of the distillation term (L1 to the fp32 output, before its weight)."""

_RANGE = "_scale_param_storage"  # NNCF's name for a quantizer's scale parameter
_EXAMPLE_HW = (24, 32)
_LOG_EVERY = 50


def float_scope(model: nn.Module, float_modules: Sequence[str]) -> nncf.IgnoredScope | None:
    """NNCF's names of the ops of ``float_modules`` (module paths) and of each op outside them that reads one of
    their outputs: the skip's ``Add``, whose 8-bit input quantizers would round the float skip back to 8 bits
    (as :func:`edgesr.quant.layers.float_module_nodes` for the exported graph)."""
    if not float_modules:
        return None
    graph = build_nncf_graph(model, torch.rand(1, 3, *_EXAMPLE_HW))
    prefixes = tuple(f"{module.replace('.', '/')}/" for module in float_modules)
    inside = [node for node in graph.get_all_nodes() if node.node_name.startswith(prefixes)]
    names = {node.node_name for node in inside}
    readers = {reader.node_name for node in inside for reader in graph.get_next_nodes(node)} - names
    return nncf.IgnoredScope(names=sorted(names | readers), validate=False)


def fake_quantized(
    model: nn.Module,
    calibration: list[np.ndarray],
    float_modules: Sequence[str] = (),
    overflow_fix: OverflowFix | None = None,
) -> nn.Module:
    """A copy of ``model`` with NNCF's fake quantizers, ranges from min/max over ``calibration``;
    ``float_modules`` and the ops that sum their outputs stay float (:func:`float_scope`); ``overflow_fix``: which
    convs get 7-bit weights (:mod:`edgesr.quant.overflow`; None: this CPU's choice)."""
    model = copy.deepcopy(model).cpu().eval()
    return nncf.quantize(
        model,
        nncf.Dataset([torch.from_numpy(patch) for patch in calibration]),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        target_device=nncf.TargetDevice.CPU,
        subset_size=len(calibration),
        fast_bias_correction=True,  # the only one the PyTorch backend has
        ignored_scope=float_scope(model, float_modules),
        advanced_parameters=AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
            overflow_fix=NNCF_OVERFLOW_FIX[overflow_fix or resolve_overflow_fix()],
        ),
    )


def _lr_scale(cfg: QatConfig) -> Callable[[str], float]:
    """The quantizers' ranges train at ``range_lr``, the weights at ``lr`` (the trainer's factor of ``lr``)."""
    return lambda name: cfg.range_lr / cfg.lr if name.endswith(_RANGE) else 1.0


def _train_config(cfg: QatConfig) -> TrainConfig:
    """The trainer's settings for the fine-tuning: L1, Adam at ``lr`` annealed to 0 by a cosine."""
    return TrainConfig(
        iterations=cfg.iterations,
        batch_size=cfg.batch,
        lr_patch=cfg.patch,
        lr=cfg.lr,
        scheduler=CosineSchedule(eta_min=0.0),
        val_every=cfg.val_every,
        checkpoint_every=cfg.checkpoint_every,
        log_every=_LOG_EVERY,
        seed=cfg.seed,
    )


class DistillationObjective(nn.Module):
    """The fine-tuning objective beyond the trainer's L1 to HR: ``distill_weight`` times L1 to the fp32 model's own
    output on ``distill_batch`` calibration-mix patches per step, drawn anew at each iteration from its number (so a
    resumed run sees the same patches)."""

    def __init__(self, teacher: nn.Module, train_pairs: Pairs, scale: int, cfg: QatConfig) -> None:
        super().__init__()
        self.teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
        self.pairs, self.scale, self.cfg = train_pairs, scale, cfg
        self.active = bool(cfg.distill_batch and cfg.distill_weight)
        self.last_l1 = float("nan")

    def forward(self, model: nn.Module, loss: Tensor, iteration: int) -> Tensor:
        cfg = self.cfg
        if not self.active:
            return loss
        mix = calibration_patches(
            self.pairs, self.scale, cfg.distill_batch, cfg.patch, cfg.seed + 1 + iteration, 0.5, 0.5
        )
        extreme = torch.from_numpy(np.concatenate(mix)).to(loss.device)
        with torch.no_grad():
            target = self.teacher(extreme)
        distill = (model(extreme) - target).abs().mean()
        self.last_l1 = float(distill.detach())
        return loss + cfg.distill_weight * distill

    def metrics(self, model: nn.Module, iteration: int) -> dict[str, float]:
        return {DISTILL_METRIC: self.last_l1} if self.active else {}


def _fingerprint(
    model: nn.Module,
    calibration: list[np.ndarray],
    cfg: QatConfig,
    float_modules: Sequence[str],
    overflow_fix: OverflowFix,
) -> dict:
    """What a resumed fine-tuning must match besides the trainer's settings: the fp32 weights it starts from, the
    calibration patches the ranges come from, the objective, the float modules and the weights' grid."""
    weights = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().numpy().tobytes())
    patches = hashlib.sha256()
    for patch in calibration:
        patches.update(np.ascontiguousarray(patch).tobytes())
    return {
        "qat": cfg.model_dump(mode="json"),
        "fp32_weights": weights.hexdigest(),
        "calibration": patches.hexdigest(),
        "float_modules": list(float_modules),
        "overflow_fix": overflow_fix,
    }


@dataclass(frozen=True)
class QatResult:
    """The int8 IR and the fine-tuning's history (the trainer's entries; empty for ``iterations: 0``)."""

    xml: Path
    history: list[dict[str, Any]]


def quantize_openvino_qat(
    model: nn.Module,
    calibration: list[np.ndarray],
    train_pairs: Pairs,
    val_pairs: Pairs,
    scale: int,
    cfg: QatConfig,
    out_xml: Path,
    run_dir: Path,
    float_modules: Sequence[str] = (),
    tracker: Tracker | None = None,
    overflow_fix: OverflowFix | None = None,
) -> QatResult:
    """Fake-quantize ``model`` (:func:`fake_quantized`), fine-tune it ``cfg.iterations`` steps on ``train_pairs``
    (name, LR, HR) with the trainer (validated on ``val_pairs``, checkpointed in ``run_dir``, so an interrupted run
    resumes there; a run of other settings there is removed), and write its OpenVINO int8 IR to ``out_xml``.
    ``model`` itself is left as it was. Runs on CUDA when present; the conversion runs on the CPU. ``overflow_fix``:
    :mod:`edgesr.quant.overflow` (None: this CPU's choice).
    """
    overflow_fix = overflow_fix or resolve_overflow_fix()
    quantized = fake_quantized(model, calibration, float_modules, overflow_fix)
    history: list[dict[str, Any]] = []
    if cfg.iterations:
        train_cfg = _train_config(cfg)
        metadata = _fingerprint(model, calibration, cfg, float_modules, overflow_fix)
        with distributed_context(train_cfg.device) as ctx:
            keep_only_an_unfinished_run(run_dir, f"qat {run_dir.name}", train_cfg, scale, metadata, ctx)
        sampler = PatchSampler([(lr, hr) for _, lr, hr in train_pairs], scale, cfg.patch, cfg.seed)
        objective = DistillationObjective(model, train_pairs, scale, cfg)
        result = train(
            quantized,
            sampler,
            val_pairs,
            train_cfg,
            scale,
            run_dir,
            tracker=tracker,
            metadata=metadata,
            objective=objective,
            lr_scale=_lr_scale(cfg),
        )
        history = result.history
    quantized.cpu().eval()
    with torch.no_grad():
        converted = ov.convert_model(quantized, example_input=torch.rand(1, 3, *_EXAMPLE_HW))
    converted.inputs[0].get_tensor().set_names({INPUT_NAME})
    converted.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    return QatResult(save_openvino(converted, out_xml, compress_to_fp16=False), history)
