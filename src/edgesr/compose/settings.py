"""Typed configuration of the ``compose`` section of ``params.yaml``: ClassSR-style composition.

ClassSR (Kong et al., CVPR 2021; paper 001 Sec. 4.3, Table 3) sends each LR patch to one of several SR
branches of different cost; ARM (Chen et al., ECCV 2022) does the same without a trained classifier.
``branches`` names the models composed, cheapest first is not required (costs are counted); ``null``
means the retrained FGNAS subnets at the pipeline's scale (S/M/L in the ``full`` profile, only S in
the CPU default, where a zoo list such as ``[fsrcnn, espcn, xlsr, fgnas_S_x2]`` gives a real choice).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from edgesr.schema import StrictModel

__all__ = ["ROUTERS", "ClassifierConfig", "ComposeConfig", "EdgeConfig", "RouterName"]

RouterName = Literal["classifier", "edge"]
ROUTERS: tuple[str, ...] = get_args(RouterName)


class ClassifierConfig(StrictModel):
    """ClassSR's classifier training (Kong et al. 2021, Sec. 3.3): branches frozen, Adam, three losses."""

    iterations: int = Field(200, ge=1, description="Adam steps on LR training patches (ClassSR trains ~200k)")
    batch_size: int = Field(16, ge=2, description="patches per step; the average loss needs a batch of >= 2")
    lr: float = Field(2.0e-4, gt=0, description="Adam learning rate (ClassSR: 2e-4)")
    l1_weight: float = Field(1000.0, ge=0, description="ClassSR code: 1000 (paper ratio 2000 : 1 : 6)")
    class_weight: float = Field(0.5, ge=0, description="class loss weight (ClassSR code: 0.5)")
    average_weight: float = Field(3.0, ge=0, description="average loss weight (ClassSR code: 3)")
    log_every: int = Field(50, ge=1, description="iterations between logged losses and class histograms")
    collapse_share: float = Field(
        0.9, gt=0, le=1, description="a branch taking more than this share of patches is reported as a collapse"
    )
    seed: int = Field(0, description="the classifier's initial weights and its training patches")


class EdgeConfig(StrictModel):
    """ARM's training-free router (Chen et al. 2022): edge score -> expected PSNR per branch -> argmax."""

    bins: int = Field(8, ge=1, description="edge-score bins of the score -> PSNR table (equal-count bins)")
    table_patches: int = Field(512, ge=1, description="LR training patches that fill the table")
    eta: float = Field(0.5, ge=0, description="dB of expected PSNR worth the whole cost of the largest branch")
    eta_sweep: list[float] = Field(
        default_factory=lambda: [0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0],
        description="eta values evaluated for the PSNR vs Mult-Adds curve",
    )
    seed: int = 0

    @field_validator("eta_sweep")
    @classmethod
    def _non_negative(cls, values: list[float]) -> list[float]:
        if not values or min(values) < 0:
            raise ValueError(f"list at least one eta >= 0, got {values}")
        return sorted(set(values))


class ComposeConfig(StrictModel):
    """The ``compose`` stage, ``edgesr upscale --model composed`` and ``benchmarks/compose_latency.py``."""

    branches: list[str] | None = Field(
        None, description="models composed (deploy.models names); null: the retrained subnets at `scale`"
    )
    router: RouterName = Field("classifier", description="the router `edgesr upscale --model composed` uses")
    patch: int = Field(32, ge=8, description="LR patch side at test time (ClassSR: 32)")
    stride: int = Field(
        28,
        ge=1,
        description="LR stride between patches (ClassSR: 28); a multiple of 4 keeps "
        "the classifier's one pass over the whole image exact",
    )
    chunk: int = Field(64, ge=1, description="patches per runtime call (compiled runtimes see this fixed batch)")
    classifier: ClassifierConfig = ClassifierConfig()
    edge: EdgeConfig = EdgeConfig()
    large_set: str | None = Field(
        None, description="a quantize.photo_sets name: large photographs evaluated besides the benchmarks"
    )
    large_set_images: int | None = Field(4, ge=1, description="how many of them (evenly spaced); null: all")
    latency_repeats: int = Field(3, ge=1, description="timed runs of the wall-clock comparison (median)")

    @field_validator("branches")
    @classmethod
    def _distinct(cls, branches: list[str] | None) -> list[str] | None:
        if branches is not None and len(set(branches)) != len(branches):
            raise ValueError(f"compose.branches lists a model twice: {branches}")
        return branches

    @model_validator(mode="after")
    def _patch_fits_stride(self) -> ComposeConfig:
        if self.patch % 4:
            raise ValueError(
                f"compose.patch {self.patch} is not a multiple of 4: the ClassSR classifier's first conv has "
                "kernel and stride 4 (ClassSR: 32)"
            )
        if self.stride > self.patch:
            raise ValueError(
                f"compose.stride {self.stride} > compose.patch {self.patch} leaves LR pixels between patches "
                "uncovered; set stride <= patch (ClassSR: 32 / 28)"
            )
        return self
