"""Typed configuration of the ``quantize`` section of ``params.yaml``: int8 post-training quantization.

Full int8 by default, first and last layers included: the Mobile AI 2021 challenge rule XLSR was built
for (paper 003 Sec. 2, "not allowing partial quantization such as leaving the first and the last layers
floating"). ``ignored_layers`` leaves named layers of one model (PyTorch module paths, e.g. ``conv_last``) in
float, ``float_modules`` leaves a module in float in every model that has one (the fixed bicubic skip);
``mode: accuracy_control`` lets NNCF return layers to float until the PSNR drop is within ``max_drop``;
``mode: qat`` fine-tunes the OpenVINO int8 model with its quantizers in the graph (:mod:`edgesr.quant.qat`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgesr.deploy.settings import EXPORT_RUNTIMES, ExportRuntime
from edgesr.quant.overflow import OverflowFixChoice
from edgesr.schema import StrictModel, distinct_choices

__all__ = ["Int8Limits", "QatConfig", "QuantizeConfig"]


class Int8Limits(StrictModel):
    """When an int8 model is deployable: limits on how far it may fall from its own fp32 form (issue 9).

    A model that breaks one is marked not deployable in the report and in MLflow, ``edgesr upscale``
    refuses its int8 form, and the ``quantize`` stage fails when it is ``deploy.default_model``.
    """

    set_drop_db: float = Field(0.3, gt=0, description="max mean PSNR-Y drop (dB) on each photo set")
    stress_psnr_db: float = Field(35.0, gt=0, description="min PSNR (dB) of int8 vs fp32 on every stress image")
    flat_mean_levels: float = Field(2.0, ge=0, description="max mean |int8 - fp32| (levels) on flat images")
    flat_max_levels: float = Field(8.0, ge=0, description="max |int8 - fp32| (levels) on flat images")


class QatConfig(StrictModel):
    """``mode: qat``: quantization-aware fine-tuning of the OpenVINO int8 model (:mod:`edgesr.quant.qat`)."""

    iterations: int = Field(1500, ge=0, description="fine-tuning steps; 0 = NNCF's PyTorch PTQ alone")
    lr: float = Field(2e-4, gt=0, description="Adam learning rate of the weights, cosine-decayed to 0")
    range_lr: float = Field(1e-2, ge=0, description="Adam learning rate of the quantizers' ranges (0: kept)")
    batch: int = Field(16, ge=1, description="training crops per step, L1 to their HR")
    patch: int = Field(48, ge=4, description="LR side of every fine-tuning patch")
    distill_batch: int = Field(
        8, ge=0, description="calibration-mix patches per step (re-exposed crops and synthetic patches), L1 to fp32"
    )
    distill_weight: float = Field(2.0, ge=0, description="weight of the L1 to the fp32 model's output")
    val_every: int = Field(250, ge=1, description="steps between validations of the fake-quantized model (PSNR-Y)")
    checkpoint_every: int = Field(100, ge=1, description="steps between checkpoints an interrupted run resumes from")
    seed: int = 0


class QuantizeConfig(StrictModel):
    """The ``quantize`` stage: calibration, the two int8 runtimes and the fp32-vs-int8 report."""

    calibration_patches: int = Field(300, ge=1, description="LR training patches (paper 003: full-set PTQ)")
    calibration_patch: int = Field(32, ge=4, description="LR side of a calibration patch")
    exposed_fraction: float = Field(0.25, ge=0, le=1, description="share of training crops re-exposed bright or dark")
    synthetic_fraction: float = Field(
        0.25, ge=0, le=1, description="share of synthetic flat / edge / ramp / checkerboard patches in extreme colours"
    )
    seed: int = 0
    runtimes: list[ExportRuntime] = Field(default_factory=lambda: list(EXPORT_RUNTIMES))
    ignored_layers: dict[str, list[str]] = Field(
        default_factory=dict, description="model name -> module paths or ONNX node names kept in float"
    )
    float_modules: list[str] = Field(
        default_factory=list,
        description="fixed (not learned) interpolation skips, by module path, in every model that has them: ONNX "
        "Runtime keeps them in float with the Add that sums their output (quant.layers.float_module_nodes); OpenVINO "
        "runs a one-conv skip in int8 on exactly kept taps with only its Add in float (quant.exact_skip)",
    )
    onnxruntime_symmetric: list[str] = Field(
        default_factory=list,
        description="models whose ONNX Runtime activation ranges are symmetric (zero point 0) instead of [min, max]; "
        "a name this pipeline does not deploy is ignored, so profiles without the model need not repeat the list",
    )
    overflow_fix: OverflowFixChoice = Field(
        "auto",
        description="7-bit weights against int16 saturation on CPUs without VNNI / AMX (quant.overflow): all_layers, "
        "first_layer, or auto (all_layers on such a CPU, else first_layer)",
    )
    mode: Literal["full_int8", "accuracy_control", "qat"] = "full_int8"
    max_drop: float = Field(0.3, gt=0, description="accuracy_control: max PSNR-Y drop (dB) on the validation split")
    qat: QatConfig = QatConfig()
    limits: Int8Limits = Int8Limits()
    photo_sets: dict[str, str] = Field(
        default_factory=dict,
        description="name -> HR folder of photographs checked besides the benchmark sets (missing: skipped)",
    )
    photo_set_images: int | None = Field(None, ge=1, description="at most this many images of each photo set")

    @field_validator("runtimes")
    @classmethod
    def _some_runtime(cls, runtimes: list[str]) -> list[str]:
        return distinct_choices(runtimes, EXPORT_RUNTIMES, "int8 runtime")

    @model_validator(mode="after")
    def _calibration_shares(self) -> QuantizeConfig:
        if self.exposed_fraction + self.synthetic_fraction > 1:
            raise ValueError(
                f"quantize.exposed_fraction {self.exposed_fraction} + synthetic_fraction {self.synthetic_fraction} "
                "is more than 1: they are shares of calibration_patches"
            )
        return self

    @model_validator(mode="after")
    def _qat_keeps_layers_int8(self) -> QuantizeConfig:
        named = sorted(model for model, layers in self.ignored_layers.items() if layers)
        if self.mode == "qat" and named:
            raise ValueError(
                f"quantize.ignored_layers names layers of {', '.join(named)}, but quantize.mode qat keeps every layer "
                "in int8 except quantize.float_modules; remove those entries or use mode full_int8 or accuracy_control"
            )
        return self
