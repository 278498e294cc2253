"""What this machine's CPU offers: its model name and instruction-set flags (Linux ``/proc/cpuinfo``)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

__all__ = ["INT8_DOT_PRODUCT_FLAGS", "cpu_model_and_flags", "has_int8_dot_product", "is_x86_64"]

INT8_DOT_PRODUCT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "avx_vnni_int8", "amx_int8"})
"""x86 flags of an int8 multiply-add that accumulates in int32 (VNNI, AMX); without one, int8 kernels sum pairs of
u8 x s8 products in int16 with saturation (AVX2's ``vpmaddubsw``; :mod:`edgesr.quant.overflow`)."""


@functools.cache
def cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    """The CPU's model name and every flag it lists (``flags`` on x86, ``Features`` on ARM); off Linux, the
    platform's processor string and no flags."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:  # not Linux: the platform string is all there is
        pass
    return model or platform.processor() or platform.machine(), frozenset(flags)


def is_x86_64() -> bool:
    """Whether this is an x86-64 machine (Linux says ``x86_64``, Windows ``AMD64``)."""
    return platform.machine().lower() in ("x86_64", "amd64")


def has_int8_dot_product() -> bool:
    """Whether int8 convolutions here accumulate without saturating: true off x86 (ARM's int8 kernels widen before
    they add) and on x86 with one of :data:`INT8_DOT_PRODUCT_FLAGS`."""
    if not is_x86_64():
        return True
    return bool(cpu_model_and_flags()[1] & INT8_DOT_PRODUCT_FLAGS)
