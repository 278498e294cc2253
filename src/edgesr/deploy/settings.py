"""Typed configuration of the ``deploy`` section of ``params.yaml``: what is exported and how it is run.

The ONNX opset, the parity tolerance of the export check (PyTorch vs ONNX Runtime vs OpenVINO fp32) and
the tiling of ``edgesr upscale`` (paper 004 Sec. 1: 12 MP phone photos do not fit through an SR network
in one piece on a device; tiles with overlapping context keep the memory bounded).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from edgesr.schema import StrictModel

__all__ = [
    "BorderMode",
    "DeployConfig",
    "EXPORT_RUNTIMES",
    "ExportRuntime",
    "PRECISIONS",
    "Precision",
    "RUNTIMES",
    "Runtime",
]

ExportRuntime = Literal["openvino", "onnxruntime"]
"""The runtimes of an exported file: the int8 runtimes and those a latency table is measured on."""
Runtime = Literal[ExportRuntime, "torch"]
"""Every runtime a deployed model runs on; these spellings are the only ones (params.yaml, CLI, folders)."""
Precision = Literal["int8", "fp32"]
BorderMode = Literal["symmetric", "edge"]
EXPORT_RUNTIMES: tuple[ExportRuntime, ...] = get_args(ExportRuntime)
RUNTIMES: tuple[str, ...] = get_args(Runtime)
PRECISIONS: tuple[str, ...] = get_args(Precision)


class DeployConfig(StrictModel):
    """The ``export`` stage and ``edgesr upscale``."""

    models: list[str] = Field(min_length=1, description="names of trained models to export and quantize")
    default_model: str = Field(description="the model `edgesr upscale` runs without --model")
    opset: int = Field(18, ge=17, description="ONNX opset (17+: DepthToSpace, dynamic shapes)")
    parity_tolerance: float = Field(1e-4, gt=0, description="max |PyTorch - runtime| of fp32 outputs in [0, 1]")
    runtime: Runtime = "openvino"
    precision: Precision = "int8"
    tile: int = Field(256, ge=8, description="LR side of one upscale tile")
    overlap: int = Field(16, ge=0, description="LR pixels of context added on each side of a tile")
    border: BorderMode = Field(
        "symmetric", description="how the image is extended by `overlap` pixels so its border has context"
    )
    threads: int = Field(2, ge=1, description="CPU threads of the runtimes")

    @field_validator("models")
    @classmethod
    def _unique(cls, models: list[str]) -> list[str]:
        if len(set(models)) != len(models):
            raise ValueError(f"deploy.models lists a name twice: {models}")
        return models

    @model_validator(mode="after")
    def _default_is_deployed(self) -> DeployConfig:
        if self.default_model not in self.models:
            raise ValueError(
                f"deploy.default_model '{self.default_model}' is not exported: add it to deploy.models "
                f"({', '.join(self.models)}) or pick one of those"
            )
        if self.runtime == "torch" and self.precision == "int8":
            raise ValueError("deploy.precision int8 runs on openvino or onnxruntime, not torch; set runtime or fp32")
        return self
