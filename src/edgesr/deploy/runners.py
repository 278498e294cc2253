"""The deployed form of a model, ready to run: the exported or quantized file, or the folded checkpoint.

What ``edgesr upscale`` and the benchmarks run; the int8 form only when the quantize stage passed it.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from edgesr.artifacts import check_int8_deployable, deployable_checkpoint, deployed_file
from edgesr.config import Params
from edgesr.deploy.export import prepare_for_export
from edgesr.deploy.runtimes import Runner, onnxruntime_runner, openvino_runner, torch_runner
from edgesr.errors import UsageError
from edgesr.train.restore import trained_model

__all__ = ["deployed_runner", "deployed_source"]


def deployed_source(
    params: Params, name: str, runtime: str, precision: str, root: Path = Path("."), *, checked: bool = True
) -> nn.Module | Path:
    """What runs the deployed ``name``: the folded checkpoint for torch fp32, else the exported/quantized file.

    An int8 model that failed the quantize stage's checks is refused (:class:`Int8NotDeployableError`) unless
    ``checked`` is False (a speed benchmark times it all the same).
    """
    if runtime == "torch":
        if precision != "fp32":
            raise UsageError("int8 runs on openvino or onnxruntime; use --precision fp32 with --runtime torch")
        return prepare_for_export(trained_model(deployable_checkpoint(params, name, root), params.scale))
    if precision == "int8" and checked:
        check_int8_deployable(root / params.paths.deploy, name, runtime)
    return deployed_file(root / params.paths.deploy, name, runtime, precision)


def deployed_runner(
    params: Params, name: str, runtime: str, precision: str, root: Path = Path("."), *, checked: bool = True
) -> Runner:
    """A runner of the deployed ``name`` (:func:`deployed_source`), one image per call."""
    threads = params.deploy.threads
    source = deployed_source(params, name, runtime, precision, root, checked=checked)
    if isinstance(source, nn.Module):
        return torch_runner(source, threads)
    return openvino_runner(source, threads) if runtime == "openvino" else onnxruntime_runner(source, threads)
