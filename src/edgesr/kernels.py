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
"""

from __future__ import annotations

import os
import platform
import sys

__all__ = ["NATIVE_ENV", "PORTABLE_KERNELS", "use_portable_kernels"]

NATIVE_ENV = "EDGESR_NATIVE_KERNELS"
PORTABLE_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


def use_portable_kernels() -> bool:
    """Pin the CPU kernels to AVX2 (see the module docstring); returns whether they are pinned.

    Must run before ``torch`` is imported: ATen reads its capability once, at import.
    """
    if os.environ.get(NATIVE_ENV) == "1" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if "torch" in sys.modules:
        raise RuntimeError("use_portable_kernels() must run before torch is imported")
    for name, value in PORTABLE_KERNELS.items():
        os.environ.setdefault(name, value)
    return True
