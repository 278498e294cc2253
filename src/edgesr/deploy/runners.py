"""The deployed form of a model, ready to run: the exported or quantized file, or the folded checkpoint.

What ``edgesr upscale`` and the benchmarks run; the int8 form only when the quantize stage passed it.
"""

from __future__ import annotations

from pathlib import Path

from edgesr.artifacts import check_int8_deployable, deployable_checkpoint, deployed_file
from edgesr.config import Params
from edgesr.deploy.export import prepare_for_export
from edgesr.deploy.runtimes import Runner, onnxruntime_runner, openvino_runner, torch_runner
from edgesr.errors import UsageError
from edgesr.train.restore import trained_model

__all__ = ["deployed_runner"]


def deployed_runner(
    params: Params, name: str, runtime: str, precision: str, root: Path = Path("."), *, checked: bool = True
) -> Runner:
    """A runner of the deployed ``name``: the exported/quantized file, or the folded checkpoint for torch fp32.

    An int8 model that failed the quantize stage's checks is refused (:class:`Int8NotDeployableError`) unless
    ``checked`` is False (a speed benchmark times it all the same).
    """
    threads = params.deploy.threads
    if runtime == "torch":
        if precision != "fp32":
            raise UsageError("int8 runs on openvino or onnxruntime; use --precision fp32 with --runtime torch")
        model = prepare_for_export(trained_model(deployable_checkpoint(params, name, root), params.scale))
        return torch_runner(model, threads)
    path = deployed_file(root / params.paths.deploy, name, runtime, precision)
    if precision == "int8" and checked:
        check_int8_deployable(root / params.paths.deploy, name, runtime)
    return openvino_runner(path, threads) if runtime == "openvino" else onnxruntime_runner(path, threads)
