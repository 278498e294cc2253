"""Training commands pin PyTorch's CPU kernels to AVX2 (edgesr.kernels), unless told to keep the native ones."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only")

_PROBE = (
    "from edgesr.kernels import use_portable_kernels; pinned = use_portable_kernels(); import torch; "
    "print(pinned, torch.backends.cpu.get_cpu_capability())"
)


def _probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "EDGESR_NATIVE_KERNELS")}
    result = subprocess.run([sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_training_kernels_are_pinned_to_avx2_unless_native_is_asked():
    assert _probe() == "True AVX2"
    native = _probe(EDGESR_NATIVE_KERNELS="1")
    assert native.startswith("False ")


def test_pinning_after_torch_is_imported_is_an_error():
    import torch  # noqa: F401

    from edgesr.kernels import use_portable_kernels

    if os.environ.get("EDGESR_NATIVE_KERNELS") == "1":
        pytest.skip("native kernels asked for")
    with pytest.raises(RuntimeError, match="before torch is imported"):
        use_portable_kernels()
