"""Parameters and Mult-Adds of a model, counted by running it on the meta device.

Conventions (DESIGN.md "Complexity conventions", paper 001 Table 2):

- Mult-Adds (MACs) are counted for one 1280x720 HR output, i.e. one LR input of
  ``ceil(720 / s) x ceil(1280 / s)`` (for x3 the smallest LR frame whose output covers 720p).
  FLOPs = 2 x Mult-Adds where a table says FLOPs.
- A convolution costs N Cout Hout Wout (Cin / groups) kh kw MACs (grouped and depthwise included); a
  transposed convolution N Cin Hin Win (Cout / groups) kh kw (each input pixel scatters one kernel);
  a matrix product (mm, addmm, bmm, linear) N K M.
- Elementwise operators (add, sub, mul, div, activations, clamp, BatchNorm, ...) are counted apart, as
  ``other_ops``: one op per output element. Convolution and addmm biases are such adds, counted there.
  Reductions and pools (mean, sum, average/max pooling) count one op per *input* element, the adds
  they perform. Data movement (views, concatenation, padding, slicing, PixelShuffle) and resampling
  kernels such as ``F.interpolate`` cost 0: the bicubic pre-upsampling of SRCNN/VDSR is not part of
  their published Mult-Adds.
- Parameters are the sum of ``numel`` over ``model.parameters()`` (buffers such as BatchNorm
  statistics and fixed bicubic taps are not parameters).

The model is deep-copied to the meta device and run once on an empty meta tensor under a
``TorchDispatchMode`` that sees every ATen operator with its shapes, so no memory is allocated for
activations and large models at 720p count in milliseconds. The input has ``model.num_in_ch``
channels (3 if the model has no such attribute), so Y-channel models (1 channel) count correctly.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from edgesr.errors import UsageError

__all__ = ["Complexity", "count_complexity"]

_ELEMENTWISE = frozenset(
    {
        "add", "sub", "rsub", "mul", "div", "neg", "abs", "pow", "sqrt", "rsqrt", "exp", "log",
        "maximum", "minimum", "where", "lerp",
        "relu", "leaky_relu", "_prelu_kernel", "prelu", "elu", "gelu", "silu", "mish", "softplus",
        "sigmoid", "hardsigmoid", "hardswish", "tanh", "hardtanh", "clamp", "clamp_min", "clamp_max",
        "_softmax", "_log_softmax",
        "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
        "native_layer_norm", "native_group_norm",
    }
)  # fmt: skip
_REDUCTIONS = frozenset(
    {"mean", "sum", "amax", "avg_pool2d", "_adaptive_avg_pool2d", "max_pool2d_with_indices"}
)  # fmt: skip
_MATMULS = frozenset({"mm", "bmm", "addmm", "baddbmm", "linear"})


@dataclass(frozen=True)
class Complexity:
    """Parameter count, Mult-Adds and other (elementwise) ops of one forward pass."""

    params: int
    mult_adds: int
    other_ops: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _first_tensor(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, tuple | list) else value


class _OpCounter(TorchDispatchMode):
    """Accumulates MACs and other ops of every ATen operator dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.mult_adds = 0
        self.other_ops = 0

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        # In-place overloads (relu_, add_) cost the same as their functional forms.
        name = func.overloadpacket.__name__.removesuffix("_")
        if name == "convolution":
            self._count_convolution(args, _first_tensor(out))
        elif name in _MATMULS:
            self._count_matmul(name, args, _first_tensor(out))
        elif name in _ELEMENTWISE:
            self.other_ops += _first_tensor(out).numel()
        elif name in _REDUCTIONS:
            self.other_ops += args[0].numel()
        return out

    def _count_convolution(self, args: tuple[Any, ...], out: torch.Tensor) -> None:
        inp, weight, bias, transposed = args[0], args[1], args[2], args[6]
        # weight is (Cout, Cin/g, k...) for a convolution and (Cin, Cout/g, k...) when transposed, so
        # weight[1] * prod(k) is the work per output element, or per input element when transposed.
        per_element = weight.shape[1] * math.prod(weight.shape[2:])
        self.mult_adds += (inp.numel() if transposed else out.numel()) * per_element
        if bias is not None:
            self.other_ops += out.numel()

    def _count_matmul(self, name: str, args: tuple[Any, ...], out: torch.Tensor) -> None:
        if name in ("addmm", "baddbmm"):
            left, has_bias = args[1], True
        elif name == "linear":
            left, has_bias = args[0], len(args) > 2 and args[2] is not None
        else:
            left, has_bias = args[0], False
        self.mult_adds += out.numel() * left.shape[-1]
        if has_bias:
            self.other_ops += out.numel()


def count_complexity(model: nn.Module, scale: int, output_hw: tuple[int, int] = (720, 1280)) -> Complexity:
    """Params, Mult-Adds and other ops of ``model`` producing one ``output_hw`` (H, W) image at ``scale``.

    The LR input is ``(1, model.num_in_ch, ceil(H / scale), ceil(W / scale))``; ``model`` is not
    modified (a meta-device copy in eval mode is run).
    """
    if not (isinstance(scale, int) and scale >= 1):
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    height, width = output_hw
    if height < 1 or width < 1:
        raise UsageError(f"output_hw must be positive (H, W), got {output_hw!r}")
    params = sum(p.numel() for p in model.parameters())
    meta_model = copy.deepcopy(model).to("meta").eval()
    num_in_ch = int(getattr(model, "num_in_ch", 3))
    lr = torch.empty(1, num_in_ch, math.ceil(height / scale), math.ceil(width / scale), device="meta")
    counter = _OpCounter()
    with torch.no_grad(), counter:
        meta_model(lr)
    return Complexity(params=params, mult_adds=counter.mult_adds, other_ops=counter.other_ops)
