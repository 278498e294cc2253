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


def test_latency_is_measured_without_the_pin_in_a_child_process(monkeypatch):
    """OpenVINO's oneDNN obeys the pin too (int8 3x slower): a search measures its latency budget natively."""
    from edgesr import kernels

    assert kernels.with_native_kernels(os.getpid) == os.getpid()  # no pin: right here
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setattr(kernels, "_PINNED", {"ONEDNN_MAX_CPU_ISA"})
    assert kernels.with_native_kernels(os.getenv, "ONEDNN_MAX_CPU_ISA") is None
    assert kernels.with_native_kernels(os.getpid) != os.getpid()
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2"  # this process keeps its pin


def test_a_cap_on_onednn_is_part_of_the_latency_cache_key(monkeypatch):
    from edgesr.search.latency_cache import machine_fingerprint

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    native = machine_fingerprint("openvino", 2, "int8")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert machine_fingerprint("openvino", 2, "int8") == native | {"onednn_max_cpu_isa": "AVX2"}
