"""Where the deployed files live: ``<paths.deploy>/<precision>/<model>/`` (written by the export and quantize stages).

fp32/<model>/model.onnx            ONNX, BatchNorm folded, dynamic H and W      (export)
fp32/<model>/openvino.xml, .bin    OpenVINO IR, fp32 weights                    (export)
fp32/<model>/openvino_fp16.xml     OpenVINO IR, fp16-compressed weights         (export)
int8/<model>/model.onnx            ONNX Runtime static QDQ int8                 (quantize)
int8/<model>/openvino.xml, .bin    NNCF int8 IR                                 (quantize)
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["FILES", "deployed_file", "model_dir"]

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
