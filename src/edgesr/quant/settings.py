"""Typed configuration of the ``quantize`` section of ``params.yaml``: int8 post-training quantization.

Full int8 by default, first and last layers included: the Mobile AI 2021 challenge rule XLSR was built
for (paper 003 Sec. 2, "not allowing partial quantization such as leaving the first and the last layers
floating"). ``ignored_layers`` leaves named layers (PyTorch module paths, e.g. ``conv_last``) in float;
``mode: accuracy_control`` lets NNCF return layers to float until the PSNR drop is within ``max_drop``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from edgesr.schema import StrictModel, distinct_choices

__all__ = ["QUANT_RUNTIMES", "QuantizeConfig"]

QUANT_RUNTIMES: tuple[str, ...] = ("openvino", "onnxruntime")


class QuantizeConfig(StrictModel):
    """The ``quantize`` stage: calibration, the two int8 runtimes and the fp32-vs-int8 report."""

    calibration_patches: int = Field(300, ge=1, description="LR training patches (paper 003: full-set PTQ)")
    calibration_patch: int = Field(32, ge=4, description="LR side of a calibration patch")
    seed: int = 0
    runtimes: list[Literal["openvino", "onnxruntime"]] = Field(default_factory=lambda: list(QUANT_RUNTIMES))
    ignored_layers: dict[str, list[str]] = Field(
        default_factory=dict, description="model name -> module paths or ONNX node names kept in float"
    )
    mode: Literal["full_int8", "accuracy_control"] = "full_int8"
    max_drop: float = Field(0.3, gt=0, description="accuracy_control: max PSNR-Y drop (dB) on the validation split")

    @field_validator("runtimes")
    @classmethod
    def _some_runtime(cls, runtimes: list[str]) -> list[str]:
        return distinct_choices(runtimes, QUANT_RUNTIMES, "int8 runtime")
