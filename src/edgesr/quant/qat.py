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

Measured on a 2-core Intel Xeon with AMX (640x360, 2 threads for the timings). The ``cpu-long`` RT subnet
(17.11 G), whose PTQ drop :mod:`edgesr.quant.openvino_ptq` leaves at 0.41 / 0.18 dB on Set5 / Set14: 0.26 / 0.11 with
the defaults (1500 steps, 9.7 min), 32.4 ms against the PTQ model's 31.2. Before the skip's ``Add`` was kept float,
NNCF's PyTorch PTQ alone gave 0.58 / 0.26, 1000 steps with the ranges kept 0.46 / 0.20, with learned ranges 0.34 /
0.15, 1500 steps 0.32 / 0.14. The default S subnet: 0.07 / 0.03 against PTQ's 0.03 / 0.01, so PTQ (full bias
correction, the int8-exact skip) stays the default and QAT is for the models PTQ leaves outside ``quantize.limits``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import nncf
import numpy as np
import openvino as ov
import torch
from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
from nncf.quantization.range_estimator import RangeEstimatorParametersSet
from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph
from torch import nn
from tqdm import tqdm

from edgesr.data.patches import PatchSampler
from edgesr.deploy.export import INPUT_NAME, OUTPUT_NAME, save_openvino
from edgesr.quant.calibration import calibration_patches
from edgesr.quant.settings import QatConfig

__all__ = ["fake_quantized", "float_scope", "quantize_openvino_qat"]

_RANGE = "_scale_param_storage"  # NNCF's name for a quantizer's scale parameter
_EXAMPLE_HW = (24, 32)


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


def fake_quantized(model: nn.Module, calibration: list[np.ndarray], float_modules: Sequence[str] = ()) -> nn.Module:
    """A copy of ``model`` with NNCF's fake quantizers, ranges from min/max over ``calibration``;
    ``float_modules`` and the ops that sum their outputs stay float (:func:`float_scope`)."""
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
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
        ),
    )


def _optimizer(model: nn.Module, cfg: QatConfig) -> torch.optim.Adam:
    ranges = [p for name, p in model.named_parameters() if name.endswith(_RANGE)]
    weights = [p for name, p in model.named_parameters() if not name.endswith(_RANGE)]
    return torch.optim.Adam([{"params": weights, "lr": cfg.lr}, {"params": ranges, "lr": cfg.range_lr}])


def _fine_tune(
    model: nn.Module,
    teacher: nn.Module,
    train_pairs: list[tuple[str, np.ndarray, np.ndarray]],
    scale: int,
    cfg: QatConfig,
    device: torch.device,
) -> None:
    """``cfg.iterations`` Adam steps on the objective of the module docstring, with the loss on the progress bar."""
    torch.manual_seed(cfg.seed)
    sampler = PatchSampler([(lr, hr) for _, lr, hr in train_pairs], scale, cfg.patch, cfg.seed)
    optimizer = _optimizer(model, cfg)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(cfg.iterations, 1))
    model.to(device).train()
    teacher.to(device).eval()
    for step in (bar := tqdm(range(cfg.iterations), desc="qat", leave=False)):
        lr, hr = (t.to(device) for t in sampler.batch(step, cfg.batch))
        loss = (model(lr) - hr).abs().mean()
        if cfg.distill_batch and cfg.distill_weight:
            mix = calibration_patches(train_pairs, scale, cfg.distill_batch, cfg.patch, cfg.seed + 1 + step, 0.5, 0.5)
            extreme = torch.from_numpy(np.concatenate(mix)).to(device)
            with torch.no_grad():
                target = teacher(extreme)
            loss = loss + cfg.distill_weight * (model(extreme) - target).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")


def quantize_openvino_qat(
    model: nn.Module,
    calibration: list[np.ndarray],
    train_pairs: list[tuple[str, np.ndarray, np.ndarray]],
    scale: int,
    cfg: QatConfig,
    out_xml: Path,
    float_modules: Sequence[str] = (),
) -> Path:
    """Fake-quantize ``model`` (:func:`fake_quantized`), fine-tune it ``cfg.iterations`` steps on ``train_pairs``
    (name, LR, HR), and write its OpenVINO int8 IR to ``out_xml``. ``model`` itself is left as it was.

    Runs on CUDA when present; the conversion to OpenVINO runs on the CPU.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quantized = fake_quantized(model, calibration, float_modules)
    _fine_tune(quantized, copy.deepcopy(model), train_pairs, scale, cfg, device)
    quantized.cpu().eval()
    with torch.no_grad():
        converted = ov.convert_model(quantized, example_input=torch.rand(1, 3, *_EXAMPLE_HW))
    converted.inputs[0].get_tensor().set_names({INPUT_NAME})
    converted.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    return save_openvino(converted, out_xml, compress_to_fp16=False)
