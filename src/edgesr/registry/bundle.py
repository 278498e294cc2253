"""Edge bundles: what one device profile needs to run one promoted version, signed.

A bundle folder::

    model/openvino.xml, model/openvino.bin   (or model/model.onnx): the files the profile's runtime loads
    reference/lr.png, reference/hr.png      the reference input and its ground truth
    manifest.json                           registered model, version, alias, profile, scale, input contract,
                                            size and sha256 of every file, the expected output of the reference
                                            (sha256 of the uint8 output and its PSNR-Y), metrics, created-at
    manifest.sig                            Ed25519 signature of manifest.json's bytes

Bundles are made for a version on its way to ``champion``. Each is written into a staging folder beside
the target and renamed into place once complete, so no half-written bundle is ever published.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgesr.data.images import save_png
from edgesr.registry.contents import CONTRACT, METRICS, version_file
from edgesr.registry.manifest import write_signed_manifest
from edgesr.registry.profiles import model_files, profile_runner, reference_pair, reference_result
from edgesr.registry.settings import DeviceProfile
from edgesr.registry.store import CHAMPION

__all__ = ["MODEL_DIR", "REFERENCE_HR", "REFERENCE_LR", "build_bundle"]

MODEL_DIR, REFERENCE_LR, REFERENCE_HR = "model", "reference/lr.png", "reference/hr.png"


def _summary(metrics: dict[str, Any], runtime: str) -> dict[str, Any]:
    """The numbers a device operator looks at: PSNR-Y per set (fp32 and int8 on this runtime), the drop."""
    quantize = metrics["quantize"][runtime]
    return {
        "psnr_y": quantize["psnr"],
        "int8_drop": {name: summary["drop"] for name, summary in quantize["sets"].items()},
    }


def build_bundle(
    version_dir: Path,
    target: Path,
    name: str,
    version: str,
    profile_name: str,
    profile: DeviceProfile,
    key: Ed25519PrivateKey,
) -> dict[str, Any]:
    """Write the signed bundle of ``profile`` for version ``version`` of ``name``, downloaded in ``version_dir``
    (its model files, contract and metrics), to ``target``. Returns the manifest.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        source = Path(version_dir) / version_file(profile.runtime, profile.precision)
        (staging / MODEL_DIR).mkdir()
        for file_name in model_files(profile.runtime):
            shutil.copyfile(source.with_name(file_name), staging / MODEL_DIR / file_name)
        contract = json.loads((Path(version_dir) / CONTRACT).read_text())
        metrics = json.loads((Path(version_dir) / METRICS).read_text())
        scale = int(contract["scale"])
        lr, hr = reference_pair(scale)
        save_png(staging / REFERENCE_LR, lr)
        save_png(staging / REFERENCE_HR, hr)
        runner = profile_runner(staging / MODEL_DIR, profile)
        expected = reference_result(runner, lr, hr, scale, profile.tile, contract["overlap"], contract["border"])
        manifest = write_signed_manifest(
            staging,
            {
                "format": 1,
                "registered_model": name,
                "version": version,
                "alias": CHAMPION,
                "profile": {"name": profile_name, **profile.model_dump(mode="json")},
                "scale": scale,
                "contract": contract,
                "model": f"{MODEL_DIR}/{model_files(profile.runtime)[0]}",
                "reference": {"input": REFERENCE_LR, "ground_truth": REFERENCE_HR, **expected},
                "metrics": _summary(metrics, profile.runtime),
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            key,
        )
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
