"""Portable CPU kernels for training, so that a run reproduces on another x86-64 machine.

PyTorch picks its CPU kernels by the instruction set of the machine: ATen's vectorised ops (AVX2 or
AVX-512), oneDNN's convolutions (AVX2, AVX-512, AMX) and MKL's GEMM. Different kernels sum in a
different order, and a 1200-iteration training amplifies the last-bit differences: on this project's
machine (AVX-512 + AMX), the same seed and data trained with AVX2 kernels gave FSRCNN 32.88 dB instead
of 33.30 and XLSR 34.51 instead of 34.06 (best validation PSNR-Y; the README's "Reproducibility").

The training commands therefore pin all three to AVX2, the level every x86-64 CPU of the last decade
has, before PyTorch is imported: ``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2`` and
``MKL_CBWR=AVX2`` (MKL's conditional numerical reproducibility). It costs about 17 % of training
time on an AVX-512 machine. ``EDGESR_NATIVE_KERNELS=1`` keeps the machine's own kernels; a value
already set in the environment wins; other architectures (aarch64) are left alone.

The pin reaches every oneDNN in the process, OpenVINO's CPU plugin included: OpenVINO int8 ran 3x
slower under it (a 4x32 subnet at 640x360, 214 against 70 ms). Latency measured for a search's
budget is what the deployed model will meet, so :func:`with_native_kernels` measures in a child
process without the pin.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from edgesr.cpu import is_x86_64

__all__ = ["NATIVE_ENV", "PORTABLE_KERNELS", "use_portable_kernels", "with_native_kernels"]

P = ParamSpec("P")
R = TypeVar("R")

NATIVE_ENV = "EDGESR_NATIVE_KERNELS"
PORTABLE_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
_PINNED: set[str] = set()  # the variables use_portable_kernels set (a user's own settings are not ours to drop)


def use_portable_kernels() -> bool:
    """Pin the CPU kernels to AVX2 (see the module docstring); returns whether they are pinned.

    Must run before ``torch`` is imported: ATen reads its capability once, at import.
    """
    if os.environ.get(NATIVE_ENV) == "1" or not is_x86_64():
        return False
    if "torch" in sys.modules:
        raise RuntimeError("use_portable_kernels() must run before torch is imported")
    for name, value in PORTABLE_KERNELS.items():
        if name not in os.environ:
            os.environ[name] = value
            _PINNED.add(name)
    return True


def with_native_kernels(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``function(*args, **kwargs)``, in a fresh child process without this process's kernel pin when
    there is one (the result comes back pickled; ``function`` must be importable), else right here."""
    if not _PINNED:
        return function(*args, **kwargs)
    pinned = {name: os.environ.pop(name) for name in sorted(_PINNED) if name in os.environ}
    try:  # the spawned interpreter inherits the environment as it is now
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            return pool.apply(function, args, kwargs)
    finally:
        os.environ.update(pinned)
