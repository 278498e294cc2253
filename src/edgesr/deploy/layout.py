"""Where the deployed files live: ``<paths.deploy>/<precision>/<model>/`` (written by the export and quantize stages).

fp32/<model>/model.onnx            ONNX, BatchNorm folded, dynamic H and W      (export)
fp32/<model>/openvino.xml, .bin    OpenVINO IR, fp32 weights                    (export)
fp32/<model>/openvino_fp16.xml     OpenVINO IR, fp16-compressed weights         (export)
int8/<model>/model.onnx            ONNX Runtime static QDQ int8                 (quantize)
int8/<model>/openvino.xml, .bin    NNCF int8 IR                                 (quantize)
int8/<model>/checks.json           per runtime: deployable, failed checks       (quantize)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

__all__ = [
    "CHECKS_FILE",
    "FILES",
    "Int8NotDeployableError",
    "check_int8_deployable",
    "deployed_file",
    "file_sha256",
    "model_dir",
]

CHECKS_FILE = "checks.json"

FILES = {"onnxruntime": "model.onnx", "openvino": "openvino.xml"}
_STAGE = {"fp32": "export", "int8": "quantize"}


def model_dir(deploy_root: Path, precision: str, model: str) -> Path:
    """``<deploy_root>/<precision>/<model>``."""
    return Path(deploy_root) / precision / model


def deployed_file(deploy_root: Path, model: str, runtime: str, precision: str) -> Path:
    """The file ``runtime`` loads for ``model`` at ``precision``; FileNotFoundError says which stage makes it."""
    if runtime not in FILES:
        raise ValueError(f"no deployed file for runtime '{runtime}'; runtimes with files: {', '.join(FILES)}")
    path = model_dir(deploy_root, precision, model) / FILES[runtime]
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {model} has no {precision} {runtime} model yet; run `dvc repro {_STAGE[precision]}` "
            f"(and list {model} in deploy.models)"
        )
    return path


def file_sha256(path: Path) -> str:
    """sha256 of a deployed file (``checks.json`` ties each verdict to the file it was measured on)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Int8NotDeployableError(ValueError):
    """An int8 model that failed the quantize stage's checks (``quantize.limits``)."""


def check_int8_deployable(deploy_root: Path, model: str, runtime: str) -> None:
    """Raise :class:`Int8NotDeployableError` naming the failed checks unless the quantize stage passed ``model``'s
    int8 form on ``runtime`` (its ``checks.json``), and that form is still the file it checked."""
    folder = model_dir(deploy_root, "int8", model)
    path = folder / CHECKS_FILE
    if not path.is_file():
        raise Int8NotDeployableError(
            f"{path} not found: {model}'s int8 model has not been checked; run `dvc repro quantize`"
        )
    verdict = json.loads(path.read_text()).get(runtime)
    if verdict is None:
        raise Int8NotDeployableError(f"{path} has no verdict for {runtime}: add it to quantize.runtimes and rerun")
    checked = verdict.get("sha256")
    if checked != file_sha256(folder / FILES[runtime]):
        raise Int8NotDeployableError(
            f"{model}'s int8 {runtime} model is not the file the quantize stage checked ({path}); "
            "rerun `dvc repro quantize`"
        )
    if not verdict["deployable"]:
        raise Int8NotDeployableError(
            f"{model} int8 on {runtime} failed the quantize checks: {'; '.join(verdict['failures'])}. "
            "Use --precision fp32, or change the calibration or quantize.limits and rerun `dvc repro quantize`"
        )
