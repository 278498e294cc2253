"""The model zoo: one file per architecture, chosen by the ``type`` of a :data:`ModelConfig`.

The configs themselves live in :mod:`edgesr.architectures`, which does not import PyTorch.

Every architecture module is imported here explicitly, which registers its builder in
:data:`~edgesr.models.registry.MODEL_REGISTRY` (STYLE.md point 4); nothing is discovered by scanning.
Every model has the same surface (STYLE.md point 6): ``(N, 3, H, W)`` float RGB in [0, 1] in,
``(N, 3, sH, sW)`` out, for s in {2, 3, 4}.

    >>> from pydantic import TypeAdapter
    >>> cfg = TypeAdapter(ModelConfig).validate_python({"type": "fsrcnn", "d": 32})
    >>> model = build_model(cfg, scale=3)
"""

from __future__ import annotations

from numbers import Integral

from torch import nn

from edgesr.architectures import (
    SAM_SR_LITE,
    SAM_SR_XLITE,
    BicubicConfig,
    ESPCNConfig,
    FGNASArchitecture,
    FGNASConfig,
    FSRCNNConfig,
    ModelConfig,
    PlainResNetConfig,
    SAMSRConfig,
    XLSRConfig,
)
from edgesr.models.bicubic import Bicubic
from edgesr.models.espcn import ESPCN
from edgesr.models.fgnas import FGNAS
from edgesr.models.fsrcnn import FSRCNN
from edgesr.models.plain_resnet import PlainResNet
from edgesr.models.registry import MODEL_REGISTRY, Registry
from edgesr.models.sam_sr import SAMSR, fold_batchnorm
from edgesr.models.xlsr import XLSR

__all__ = [
    "ESPCN",
    "FGNAS",
    "FSRCNN",
    "MODEL_NAMES",
    "MODEL_REGISTRY",
    "SAMSR",
    "SAM_SR_LITE",
    "SAM_SR_XLITE",
    "SUPPORTED_SCALES",
    "XLSR",
    "Bicubic",
    "BicubicConfig",
    "ESPCNConfig",
    "FGNASArchitecture",
    "FGNASConfig",
    "FSRCNNConfig",
    "ModelConfig",
    "PlainResNet",
    "PlainResNetConfig",
    "Registry",
    "SAMSRConfig",
    "XLSRConfig",
    "build_model",
    "default_model_config",
    "fold_batchnorm",
]

SUPPORTED_SCALES: tuple[int, ...] = (2, 3, 4)

_DEFAULT_CONFIGS: dict[str, ModelConfig] = {
    "bicubic": BicubicConfig(),
    "fsrcnn": FSRCNNConfig(),
    "espcn": ESPCNConfig(),
    "xlsr": XLSRConfig(),
    "sam_sr_xlite": SAM_SR_XLITE,
    "sam_sr_lite": SAM_SR_LITE,
    "plain_resnet": PlainResNetConfig(),
}

MODEL_NAMES: tuple[str, ...] = tuple(_DEFAULT_CONFIGS)
"""Names of the zoo's models with their papers' default settings (see :func:`default_model_config`)."""


def default_model_config(name: str) -> ModelConfig:
    """The papers' configuration of the zoo model ``name`` (one of :data:`MODEL_NAMES`)."""
    try:
        return _DEFAULT_CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}") from None


def build_model(cfg: ModelConfig, scale: int) -> nn.Module:
    """Build the architecture described by ``cfg`` for upscaling factor ``scale`` (2, 3 or 4).

    The returned model maps (N, 3, H, W) float RGB in [0, 1] to (N, 3, scale H, scale W).
    """
    # bool is an Integral and 2.0 == 2: both would slip through a plain membership test.
    if not isinstance(scale, Integral) or isinstance(scale, bool) or scale not in SUPPORTED_SCALES:
        allowed = ", ".join(str(s) for s in SUPPORTED_SCALES)
        raise ValueError(f"scale must be one of {allowed}, got {scale!r}")
    return MODEL_REGISTRY.get(cfg.type)(cfg, int(scale))
