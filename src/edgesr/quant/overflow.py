"""7-bit int8 weights where the CPU's int8 kernels saturate: NNCF's overflow fix, ONNX Runtime's ``reduce_range``.

An x86 CPU without an int8 dot-product instruction (VNNI or AMX; :data:`edgesr.cpu.INT8_DOT_PRODUCT_FLAGS`)
multiplies u8 activations by s8 weights with AVX2's ``vpmaddubsw``, which adds each pair of products in int16
and saturates at 32767: two products of 255 x 127 reach 64770. OpenVINO (oneDNN) and ONNX Runtime (MLAS) both
run int8 convolutions this way on such a CPU, and the sums of large activations clip. Bright and saturated content
shows it first: on an AMD EPYC (Zen 3, AVX2), in the test suite's small pipeline project, the default S subnet's
ONNX Runtime int8 model missed flat blue by 8.8 levels on average and 24 at most and the OpenVINO model flat cyan by
10 at most, so the stage refused it (``quantize.limits``), where an Intel Xeon with VNNI passed. Weights of 7 bits
([-64, 63] or [-64, 64]) keep every pair sum under 2 x 255 x 64 = 32640, so nothing clips; they cost half the
weight resolution. The default pipeline's S subnet on that CPU: Set5 / Set14 drop 0.03 / 0.01 dB either way, worst
stress-image error 10 levels with 8-bit weights (checkerboard_4px, both runtimes) and 5 (OpenVINO) / 3 (ONNX
Runtime) with 7-bit ones.

``quantize.overflow_fix`` chooses: ``all_layers`` (NNCF ``OverflowFix.ENABLE``, ONNX Runtime ``reduce_range``),
``first_layer`` (NNCF's CPU default, ``OverflowFix.FIRST_LAYER``; ONNX Runtime has no per-layer switch and keeps
8 bits), or ``auto`` (the default): ``all_layers`` on a CPU without an int8 dot product, else ``first_layer``.
The int8 model is built for the CPU that quantizes it; a model quantized on a VNNI machine for an AVX2 device
needs ``all_layers`` set by hand.
"""

from __future__ import annotations

from typing import Literal

from edgesr.cpu import has_int8_dot_product

__all__ = ["OverflowFix", "OverflowFixChoice", "resolve_overflow_fix", "weight_bits"]

OverflowFix = Literal["all_layers", "first_layer"]
OverflowFixChoice = Literal["auto", "all_layers", "first_layer"]


def resolve_overflow_fix(choice: OverflowFixChoice = "auto") -> OverflowFix:
    """``choice``, with ``auto`` resolved for this machine's CPU (see the module docstring)."""
    if choice != "auto":
        return choice
    return "first_layer" if has_int8_dot_product() else "all_layers"


def weight_bits(runtime: str, overflow_fix: OverflowFix) -> str:
    """The int8 weights ``runtime`` gets under ``overflow_fix``, as the quantize report states them."""
    if overflow_fix == "all_layers":
        return "7-bit (overflow fix: all layers)"
    return "8-bit, first layer 7-bit" if runtime == "openvino" else "8-bit"
