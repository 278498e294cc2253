"""Typed configuration of the ``registry`` section of ``params.yaml``: what is registered, the promotion gates
and the device profiles (issue 12).

A device profile is an edge box: the runtime and precision it runs, its thread count, its latency budget for
one LR tile of ``tile`` x ``tile`` pixels, measured on this machine at promotion time with those settings.
The registered files of a version are the int8 OpenVINO IR and the int8 and fp32 ONNX, so a profile runs
one of those three.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from edgesr.deploy.settings import ExportRuntime, Precision
from edgesr.schema import StrictModel

__all__ = ["DeviceProfile", "PromotionGates", "RegistryConfig"]


class DeviceProfile(StrictModel):
    """One kind of edge box: how it runs a model and how fast it must be."""

    runtime: ExportRuntime
    precision: Precision = "int8"
    threads: int = Field(ge=1, description="CPU threads of the runtime on the device")
    latency_budget_ms: float = Field(gt=0, description="max median latency (ms) of one tile x tile LR input")
    tile: int = Field(128, ge=8, description="LR side of one tile the device runs")

    @model_validator(mode="after")
    def _registered_form(self) -> DeviceProfile:
        if self.runtime == "openvino" and self.precision == "fp32":
            raise ValueError(
                "openvino fp32 is not registered (a version holds the int8 OpenVINO IR and the int8 and fp32 ONNX); "
                "use precision int8, or runtime onnxruntime for fp32"
            )
        return self


class PromotionGates(StrictModel):
    """What a candidate must pass to become ``champion`` (``edgesr promote``)."""

    psnr_tolerance_db: float = Field(
        0.05, ge=0, description="int8 PSNR-Y on each set may fall at most this far below the champion's"
    )
    max_int8_drop_db: float = Field(0.3, gt=0, description="max fp32 - int8 PSNR-Y (dB) on each set and runtime")
    max_parity_abs: float = Field(1e-4, gt=0, description="max |PyTorch - runtime| of fp32 outputs (export parity)")


class RegistryConfig(StrictModel):
    """The ``register`` stage, ``edgesr promote``, ``edgesr keys`` and ``edgesr device``."""

    models: list[str] | None = Field(None, description="registered models; null: [deploy.default_model]")
    gates: PromotionGates = PromotionGates()
    profiles: dict[str, DeviceProfile] = Field(
        default_factory=lambda: {
            "box-openvino-2t": DeviceProfile(runtime="openvino", threads=2, latency_budget_ms=40.0),
            "box-onnxruntime-1t": DeviceProfile(runtime="onnxruntime", threads=1, latency_budget_ms=80.0),
        }
    )
    latency_repeats: int = Field(5, ge=1, description="timed runs per profile at promotion (median)")
    latency_warmup: int = Field(2, ge=0)
    smoke_tolerance_db: float = Field(
        0.05, ge=0, description="device check: reference PSNR-Y within this of the manifest's"
    )
    keys_dir: str = Field(".edgesr/keys", description="signing key pair of `edgesr keys init` (git-ignored)")

    @field_validator("profiles")
    @classmethod
    def _named_profiles(cls, profiles: dict[str, DeviceProfile]) -> dict[str, DeviceProfile]:
        if not profiles:
            raise ValueError("list at least one device profile, e.g. `box: {runtime: openvino, threads: 2, ...}`")
        for name in profiles:
            if not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"profile name '{name}' must use letters, digits, '_' or '-' (it names a folder)")
        return profiles

    @field_validator("models")
    @classmethod
    def _unique(cls, models: list[str] | None) -> list[str] | None:
        if models is not None and (not models or len(set(models)) != len(models)):
            raise ValueError(f"registry.models lists each model once (at least one), or is null; got {models}")
        return models
