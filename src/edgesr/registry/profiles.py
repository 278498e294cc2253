"""Running a model the way a device profile does: its files, its runner, its tile latency, the reference check.

Promotion times each profile's runtime, precision and threads on this machine (paper 002: measure on the
deployment runtime); a bundle records what its model makes of a reference input, and a device checks
that it gets the same. The reference is a crop of the embedded astronaut photograph, its LR made with
MATLAB bicubic (DESIGN.md data conventions), upscaled through the tiled path of ``edgesr upscale``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edgesr.artifacts import FILES
from edgesr.data.imresize import imresize, modcrop
from edgesr.data.sources import embedded_images
from edgesr.deploy.runtimes import Runner, onnxruntime_runner, openvino_runner
from edgesr.deploy.settings import BorderMode
from edgesr.deploy.tiling import upscale_tiled
from edgesr.latency import runner_median_ms
from edgesr.metrics import psnr_y
from edgesr.registry.contents import version_file
from edgesr.registry.settings import DeviceProfile

__all__ = [
    "model_files",
    "profile_latencies",
    "profile_runner",
    "reference_pair",
    "reference_result",
    "tile_latency_ms",
]

_REFERENCE_IMAGE, _REFERENCE_LR_SIDE = "astronaut", 48


def model_files(runtime: str) -> list[str]:
    """The files ``runtime`` loads, the one it opens first: ``openvino.xml`` (+ ``.bin``) or ``model.onnx``."""
    main = FILES["openvino" if runtime == "openvino" else "onnxruntime"]
    return [main, Path(main).with_suffix(".bin").name] if runtime == "openvino" else [main]


def profile_runner(folder: Path, profile: DeviceProfile) -> Runner:
    """A runner of the model in ``folder`` (the files of :func:`model_files`) with the profile's threads."""
    path = Path(folder) / model_files(profile.runtime)[0]
    if profile.runtime == "openvino":
        return openvino_runner(path, profile.threads)
    return onnxruntime_runner(path, profile.threads)


def tile_latency_ms(runner: Runner, tile: int, repeats: int, warmup: int) -> float:
    """Median wall time (ms) of one (1, 3, tile, tile) input, after ``warmup`` untimed runs."""
    lr = np.random.default_rng(0).random((1, 3, tile, tile), dtype=np.float32)
    return runner_median_ms(runner, lr, repeats, warmup)


def profile_latencies(
    profiles: Mapping[str, DeviceProfile], version_dir: Path, repeats: int, warmup: int
) -> dict[str, float]:
    """Median ms of one tile per device profile on this machine, each running its files of ``version_dir``
    (a version's layout: ``int8/openvino.xml``, ``int8/model.onnx``, ...)."""
    latencies = {}
    for name, profile in tqdm(profiles.items(), desc="latency per profile"):
        folder = (version_dir / version_file(profile.runtime, profile.precision)).parent
        latencies[name] = tile_latency_ms(profile_runner(folder, profile), profile.tile, repeats, warmup)
    return latencies


def reference_pair(scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) uint8 RGB: a centre crop of the embedded astronaut, LR ``48 x 48``, by MATLAB bicubic."""
    image = dict(embedded_images())[_REFERENCE_IMAGE]
    side = _REFERENCE_LR_SIDE * scale
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    hr = modcrop(image[top : top + side, left : left + side], scale)
    return imresize(hr, 1 / scale), hr


def reference_result(
    runner: Runner, lr: np.ndarray, hr: np.ndarray, scale: int, tile: int, overlap: int, border: BorderMode
) -> dict[str, float | str]:
    """What ``runner`` makes of the reference: sha256 of the uint8 output and its PSNR-Y against the HR."""
    sr = upscale_tiled(runner, lr, scale, tile, overlap, border=border)
    return {"output_sha256": hashlib.sha256(sr.tobytes()).hexdigest(), "psnr_y": psnr_y(sr, hr, scale)}
