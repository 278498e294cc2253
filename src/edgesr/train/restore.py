"""A trained model back from its checkpoint: the architecture and scale recorded in it, then its weights."""

from __future__ import annotations

from pathlib import Path

from pydantic import TypeAdapter
from torch import nn

from edgesr.errors import MissingInputError, UsageError
from edgesr.models import ModelConfig, build_model
from edgesr.train.trainer import load_checkpoint

__all__ = ["trained_model"]


def trained_model(checkpoint: Path, scale: int) -> nn.Module:
    """Rebuild a model from its checkpoint's metadata (architecture, scale) and load its weights (eval mode)."""
    if not Path(checkpoint).is_file():
        raise MissingInputError(f"{checkpoint} not found: run its training stage first (`dvc repro`)")
    meta = (state := load_checkpoint(checkpoint))["metadata"]
    if int(meta["scale"]) != scale:
        raise UsageError(
            f"{checkpoint} was trained at x{meta['scale']} but this pipeline evaluates x{scale}; "
            f"rerun its train stage (dvc repro) or set scale: {meta['scale']}"
        )
    model = build_model(TypeAdapter(ModelConfig).validate_python(meta["model"]), scale)
    model.load_state_dict(state["model"])
    return model.eval()
