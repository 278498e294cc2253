"""Per-layer latency table of the deployment runtime and a differentiable latency estimate for FGNAS.

Paper 002 (Zhan et al., "Achieving on-Mobile Real-Time Super-Resolution with Neural Architecture and
Pruning Search", 2021) makes the search *compiler-aware*: the cost the search minimises is latency
measured on the runtime the model is deployed with, not a proxy. Here that idea replaces the
``K^2 H W (alive in)(alive out)`` term of paper 001's regularizer (Eq. 3) by the measured latency of
one convolution with that many alive input and output channels at the LR resolution:

    R_latency(psi) = sum_l T_kind(l)(alive_in_l, alive_out_l)    [ms]

where ``T_kind`` is a table measured once per machine on a channel grid and read by bilinear
interpolation, so the straight-through gradients of the gates (Eq. 1, Eq. 4) flow through it.

Table layout. One grid per kind of conv of :meth:`Supernet.counted_convs`:

    head      3x3, 3 -> c_out            (input fixed: the RGB image)
    conv1x1   1x1, c_in -> c_out          (block{i}.pointwise)
    conv3x3   3x3, c_in -> c_out          (block{i}.mult, block{i}.residual, after_body: the same op)
    last      3x3, c_in -> 3 s^2          (output fixed)

A variable axis is measured at the counts ``1, step, 2 step, ..., width`` (``width`` added when it is
not a multiple of ``step``) and extended by a count of 0 whose latency is 0: a conv with no alive
input or output channel is absent from the subnet. Between grid points the table is linear in each
count (bilinear in the pair); above ``width`` nothing is defined and an error is raised.

What one entry measures (units: milliseconds; median over ``rounds`` interleaved passes of the
median of ``repeats`` runs after ``warmup`` runs, :func:`build_latency_table`).
A single conv with bias on a random ``(1, c_in, H, W)`` fp32 input, ``H x W`` the LR size of a
``output_hw`` output (640x360 for 1280x720 at x2). On OpenVINO the entry is the execution time that
the runtime's own profiler (``PERF_COUNT``) reports for the conv node with its fused bias, *without*
the layout Reorders that the isolated model needs at its input and output: inside a network the CPU
plugin keeps activations in its blocked layout from one conv to the next, and those two Reorders
alone take longer than the conv itself (measured: 3x3 32 -> 32 at 640x360, 12 ms conv vs 29 ms end
to end). On ONNX Runtime (the fallback) the entry is the wall time of ``session.run``.

Everything else the network runs (activations, residual adds, the channel gathers of the pruned
subnet, PixelShuffle) is not in the table; :attr:`LatencyTable.overhead_ms` is a constant that a
benchmark can fit (``benchmarks/latency_estimate.py``) and that :meth:`LatencyTable.estimate_ms`
adds once per network.

Tables are cached as JSON, one file per machine and runtime fingerprint (CPU model and ISA, runtime
and version, threads, precision, LR size, grid, kinds), under ``$EDGESR_CACHE_DIR/latency`` or
``~/.cache/edgesr/latency``; a second build with the same fingerprint reads the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from edgesr.files import write_json
from edgesr.search.supernet import CountedConv, SupernetConfig

__all__ = [
    "CACHE_ENV",
    "RUNTIMES",
    "LatencyTable",
    "LayerGrid",
    "Runtime",
    "build_latency_table",
    "channel_grid",
    "conv_kind",
    "default_cache_dir",
    "lr_size",
    "machine_fingerprint",
    "measure_conv_ms",
]

Runtime = Literal["openvino", "onnxruntime"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
Precision = Literal["f32", "bf16", "f16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
CACHE_ENV = "EDGESR_CACHE_DIR"
FORMAT_VERSION = 1
"""Bumped whenever what an entry means changes, so old cache files are not reused."""

_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_bf16", "neon", "asimd")


# ---- the table and its differentiable read-out ------------------------------------------------------------------


@dataclass(frozen=True)
class LayerGrid:
    """Measured latency of one kind of conv on a grid of channel counts.

    ``ms[i][j]`` is the latency (ms) of a ``kernel x kernel`` conv with ``in_counts[i]`` input and
    ``out_counts[j]`` output channels. An axis with a single count is fixed (the head's 3 inputs, the
    last conv's ``3 s^2`` outputs); a variable axis is strictly increasing, starts at >= 1, and gets
    an implicit count 0 of latency 0 when read.
    """

    kernel: int
    in_counts: tuple[int, ...]
    out_counts: tuple[int, ...]
    ms: tuple[tuple[float, ...], ...]

    def __post_init__(self) -> None:
        for axis, counts in (("in_counts", self.in_counts), ("out_counts", self.out_counts)):
            if not counts or any(c < 1 for c in counts) or list(counts) != sorted(set(counts)):
                raise ValueError(f"{axis} must be strictly increasing counts >= 1, got {list(counts)}")
        shape = (len(self.in_counts), len(self.out_counts))
        if len(self.ms) != shape[0] or any(len(row) != shape[1] for row in self.ms):
            raise ValueError(f"ms must be a {shape[0]} x {shape[1]} grid (in_counts x out_counts)")
        if not all(np.isfinite(v) and v >= 0 for row in self.ms for v in row):
            raise ValueError("ms must hold finite latencies >= 0")

    def as_dict(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "in_counts": list(self.in_counts),
            "out_counts": list(self.out_counts),
            "ms": [list(row) for row in self.ms],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerGrid:
        return cls(
            kernel=int(data["kernel"]),
            in_counts=tuple(int(c) for c in data["in_counts"]),
            out_counts=tuple(int(c) for c in data["out_counts"]),
            ms=tuple(tuple(float(v) for v in row) for row in data["ms"]),
        )


def conv_kind(conv: CountedConv) -> str:
    """The table kind of one conv of :meth:`Supernet.counted_convs`: head, last, conv1x1 or conv3x3."""
    if conv.name in ("head", "last"):
        return conv.name
    return f"conv{conv.kernel}x{conv.kernel}"


def _axis(counts: Sequence[int], device: torch.device, dtype: torch.dtype) -> Tensor:
    """Grid counts of one axis as read: a variable axis gets its count 0 in front."""
    values = list(counts) if len(counts) == 1 else [0, *counts]
    return torch.tensor(values, device=device, dtype=dtype)


def _segments(axis: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Lower / upper grid index and the differentiable fraction ``t`` of each ``x`` along ``axis``.

    At a grid point the segment to its right is used (the last point uses the last segment), so the
    gradient at an integer count is the slope towards the next measured count.
    """
    if axis.numel() == 1:  # a fixed axis: no dependence on x
        zero = torch.zeros_like(x, dtype=torch.long)
        return zero, zero, torch.zeros_like(x)
    lower = (torch.searchsorted(axis, x.detach().contiguous(), right=True) - 1).clamp(0, axis.numel() - 2)
    t = (x - axis[lower]) / (axis[lower + 1] - axis[lower])
    return lower, lower + 1, t


@dataclass
class LatencyTable:
    """Per-layer latency of the deployment runtime, read as a differentiable function of channel counts.

    ``grids`` maps a kind (:func:`conv_kind`) to its :class:`LayerGrid`; ``overhead_ms`` is added once
    per network (the non-conv part, fitted by a benchmark; 0 by default); ``meta`` records how and
    where the table was measured (its cache fingerprint, repeats, build time).
    """

    grids: dict[str, LayerGrid]
    overhead_ms: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    _tensors: dict[tuple[str, torch.device, torch.dtype], tuple[Tensor, Tensor, Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def _grid_tensors(self, kind: str, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        """(in axis, out axis, padded ms grid) on ``device``, zero row / column for the count 0."""
        key = (kind, device, dtype)
        if key not in self._tensors:
            grid = self.grids[kind]
            ms = torch.tensor(grid.ms, dtype=dtype)
            if len(grid.in_counts) > 1:
                ms = torch.cat([torch.zeros(1, ms.shape[1], dtype=dtype), ms], dim=0)
            if len(grid.out_counts) > 1:
                ms = torch.cat([torch.zeros(ms.shape[0], 1, dtype=dtype), ms], dim=1)
            in_axis, out_axis = _axis(grid.in_counts, device, dtype), _axis(grid.out_counts, device, dtype)
            self._tensors[key] = (in_axis, out_axis, ms.to(device))
        return self._tensors[key]

    def interpolate(self, kind: str, alive_in: Tensor, alive_out: Tensor) -> Tensor:
        """Bilinear read-out of one kind's grid at ``(alive_in, alive_out)`` (same shape, any device), ms.

        Exact at grid points, linear in each count between them, 0 where a count is 0. Counts outside
        the grid (negative, above the widest measured, or not the fixed count of a fixed axis) raise.
        """
        if kind not in self.grids:
            raise KeyError(f"no latency grid for conv kind {kind!r}; the table has {sorted(self.grids)}")
        alive_in, alive_out = torch.broadcast_tensors(alive_in, alive_out)
        dtype = alive_in.dtype if alive_in.is_floating_point() else torch.get_default_dtype()
        alive_in, alive_out = alive_in.to(dtype), alive_out.to(dtype)
        in_axis, out_axis, ms = self._grid_tensors(kind, alive_in.device, dtype)
        self._check_range(kind, in_axis, alive_in, "alive_in")
        self._check_range(kind, out_axis, alive_out, "alive_out")
        i0, i1, ti = _segments(in_axis, alive_in)
        o0, o1, to = _segments(out_axis, alive_out)
        return (
            (1 - ti) * (1 - to) * ms[i0, o0]
            + ti * (1 - to) * ms[i1, o0]
            + (1 - ti) * to * ms[i0, o1]
            + ti * to * ms[i1, o1]
        )

    @staticmethod
    def _check_range(kind: str, axis: Tensor, x: Tensor, what: str) -> None:
        # One host sync per read-out: the price of an error instead of a silent extrapolation.
        if axis.numel() == 1:
            bad = (x.detach() - axis[0]).abs() > 0.5
            allowed = f"the fixed count {int(axis[0])}"
        else:
            bad = (x.detach() < 0) | (x.detach() > axis[-1])
            allowed = f"counts in [0, {int(axis[-1])}]"
        if bool(bad.any()):
            raise ValueError(f"{kind} {what} = {x.detach().flatten().tolist()} outside the latency table ({allowed})")

    def estimate_ms(self, convs: Sequence[CountedConv]) -> Tensor:
        """The latency regularizer: ``overhead_ms + sum_l T_kind(l)(alive_in_l, alive_out_l)`` in ms.

        Takes :meth:`Supernet.counted_convs` (counts on CPU or CUDA, forward values integers) and
        returns a 0-dim tensor on their device, differentiable w.r.t. every ``alive_in`` / ``alive_out``
        with the slope of the bilinear surface (Eq. 3 of paper 001 with ``K^2 H W c_in c_out``
        replaced by the measured latency, paper 002).
        """
        if not convs:
            raise ValueError("estimate_ms needs at least one conv")
        by_kind: dict[str, list[CountedConv]] = {}
        for conv in convs:
            by_kind.setdefault(conv_kind(conv), []).append(conv)
        device = convs[0].alive_out.device
        total: Tensor = torch.tensor(float(self.overhead_ms), device=device, dtype=convs[0].alive_out.dtype)
        for kind, group in by_kind.items():
            alive_in = torch.stack([c.alive_in.to(device) for c in group])
            alive_out = torch.stack([c.alive_out.to(device) for c in group])
            total = total + self.interpolate(kind, alive_in, alive_out).sum()
        return total

    def with_overhead(self, overhead_ms: float) -> LatencyTable:
        """The same table with another constant per-network overhead (ms)."""
        return LatencyTable(dict(self.grids), overhead_ms=float(overhead_ms), meta=dict(self.meta))

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "overhead_ms": self.overhead_ms,
            "meta": self.meta,
            "grids": {kind: grid.as_dict() for kind, grid in self.grids.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyTable:
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"latency table format {data.get('format')!r}, expected {FORMAT_VERSION}")
        grids = {str(kind): LayerGrid.from_dict(grid) for kind, grid in data["grids"].items()}
        return cls(grids, overhead_ms=float(data.get("overhead_ms", 0.0)), meta=dict(data.get("meta", {})))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as JSON (atomically)."""
        return write_json(path, self.as_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyTable:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# ---- measuring one conv on the runtime --------------------------------------------------------------------------


def lr_size(scale: int, output_hw: tuple[int, int] = (720, 1280)) -> tuple[int, int]:
    """LR size ``(ceil(H / s), ceil(W / s))`` at which every supernet conv runs (DESIGN.md complexity)."""
    return -(-output_hw[0] // scale), -(-output_hw[1] // scale)


def channel_grid(width: int, step: int) -> tuple[int, ...]:
    """Measured counts of a variable axis: ``1, step, 2 step, ..., width`` (width always included)."""
    if width < 1 or step < 1:
        raise ValueError(f"width and step must be >= 1, got width={width}, step={step}")
    return tuple(sorted({1, *range(step, width + 1, step), width}))


def _conv_weights(kernel: int, c_in: int, c_out: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(c_in * 1000 + c_out)
    weight = (rng.standard_normal((c_out, c_in, kernel, kernel)) / np.sqrt(c_in * kernel**2)).astype(np.float32)
    return weight, rng.standard_normal(c_out).astype(np.float32)


_OV_CORE: Any = None


def _openvino_core() -> Any:
    global _OV_CORE
    if _OV_CORE is None:
        import openvino as ov

        _OV_CORE = ov.Core()
    return _OV_CORE


def openvino_config(threads: int, precision: str, profile: bool = False) -> dict[str, Any]:
    """``compile_model`` properties of a latency measurement (one stream, ``threads`` threads)."""
    config: dict[str, Any] = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        # Explicit: the CPU plugin's default is bf16 on AMX / AVX512-BF16 CPUs and f32 elsewhere.
        "INFERENCE_PRECISION_HINT": precision,
    }
    if profile:
        config["PERF_COUNT"] = True
    return config


def _openvino_conv_ms(
    kernel: int, c_in: int, c_out: int, lr_hw: tuple[int, int], threads: int, precision: str, repeats: int, warmup: int
) -> float:
    import openvino as ov
    import openvino.opset13 as ops

    weight, bias = _conv_weights(kernel, c_in, c_out)
    pad = kernel // 2
    x = ops.parameter([1, c_in, *lr_hw], ov.Type.f32, name="x")
    y = ops.convolution(x, ops.constant(weight), [1, 1], [pad, pad], [pad, pad], [1, 1])
    model = ov.Model([ops.add(y, ops.constant(bias.reshape(1, c_out, 1, 1)))], [x], "conv")
    compiled = _openvino_core().compile_model(model, "CPU", openvino_config(threads, precision, profile=True))
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(np.random.default_rng(0).random((1, c_in, *lr_hw), dtype=np.float32)))
    times: list[float] = []
    for index in range(warmup + repeats):
        request.infer()
        if index >= warmup:
            # The conv node with its fused bias; the layout Reorders at the isolated model's borders
            # do not exist between convs inside a network (module docstring).
            nodes = [p for p in request.get_profiling_info() if p.node_type not in ("Reorder", "Parameter", "Result")]
            times.append(sum(p.real_time.total_seconds() for p in nodes) * 1e3)
    return statistics.median(times)


def _onnxruntime_conv_ms(
    kernel: int, c_in: int, c_out: int, lr_hw: tuple[int, int], threads: int, repeats: int, warmup: int
) -> float:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight, bias = _conv_weights(kernel, c_in, c_out)
    pad = kernel // 2
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[kernel, kernel], pads=[pad] * 4)],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, *lr_hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c_out, *lr_hw])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx._serialize(model), options, providers=["CPUExecutionProvider"])
    feed = {"x": np.random.default_rng(0).random((1, c_in, *lr_hw), dtype=np.float32)}
    times: list[float] = []
    for index in range(warmup + repeats):
        start = time.perf_counter()
        session.run(None, feed)
        if index >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _check_runtime(runtime: str, precision: str) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if runtime == "onnxruntime" and precision != "f32":
        raise ValueError(f"onnxruntime's CPU provider runs an fp32 graph in f32 only; got precision {precision!r}")


def measure_conv_ms(
    kernel: int,
    c_in: int,
    c_out: int,
    lr_hw: tuple[int, int],
    *,
    runtime: Runtime = "openvino",
    threads: int = 2,
    precision: Precision = "f32",
    repeats: int = 5,
    warmup: int = 3,
) -> float:
    """Median latency (ms) of one ``kernel x kernel`` conv with bias, ``(1, c_in, H, W) -> (1, c_out, H, W)``.

    OpenVINO: the profiler's time of the conv node (layout Reorders excluded, see the module
    docstring); ONNX Runtime: the wall time of ``session.run``.
    """
    _check_runtime(runtime, precision)
    if min(kernel, c_in, c_out, *lr_hw) < 1 or repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError(
            f"need kernel, channels, size, repeats, threads >= 1 and warmup >= 0; got kernel={kernel}, "
            f"c_in={c_in}, c_out={c_out}, lr_hw={lr_hw}, repeats={repeats}, warmup={warmup}, threads={threads}"
        )
    if runtime == "openvino":
        return _openvino_conv_ms(kernel, c_in, c_out, lr_hw, threads, precision, repeats, warmup)
    return _onnxruntime_conv_ms(kernel, c_in, c_out, lr_hw, threads, repeats, warmup)


# ---- the machine fingerprint and the cache ----------------------------------------------------------------------


def _cpu_description() -> tuple[str, list[str]]:
    """CPU model name and the vector-ISA flags that decide which kernels a runtime picks."""
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
    model = model or platform.processor() or platform.machine()
    return model, sorted(flags & set(_ISA_FLAGS))


def _runtime_version(runtime: str) -> str:
    if runtime == "openvino":
        import openvino as ov

        return ov.get_version()
    import onnxruntime as ort

    return ort.__version__


def machine_fingerprint(
    runtime: Runtime = "openvino", threads: int = 2, precision: Precision = "f32"
) -> dict[str, Any]:
    """What makes measured latencies comparable: CPU model and ISA, core count, runtime and version, threads."""
    cpu, isa = _cpu_description()
    return {
        "cpu": cpu,
        "isa": isa,
        "logical_cpus": os.cpu_count(),
        "machine": platform.machine(),
        "runtime": runtime,
        "runtime_version": _runtime_version(runtime),
        "threads": threads,
        "precision": precision,
    }


def default_cache_dir() -> Path:
    """``$EDGESR_CACHE_DIR/latency`` when set, else ``$XDG_CACHE_HOME/edgesr/latency`` (``~/.cache``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / "latency"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "edgesr" / "latency"


def _kinds(
    cfg: SupernetConfig, scale: int, grid: tuple[int, ...]
) -> dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]]:
    """kind -> (kernel, in counts, out counts) for the convs of ``Supernet(cfg, scale)``."""
    kinds = {"head": (3, (3,), grid)}
    if cfg.pointwise:
        kinds["conv1x1"] = (1, grid, grid)
    kinds["conv3x3"] = (3, grid, grid)
    kinds["last"] = (3, grid, (3 * scale * scale,))
    return kinds


def _read_cache(path: Path, fingerprint: dict[str, Any], rounds: int, repeats: int) -> LatencyTable | None:
    """The cached table, or None (with a warning when the file exists but cannot be used)."""
    if not path.is_file():
        return None
    try:
        table = LatencyTable.load(path)
        if table.meta.get("fingerprint") != fingerprint:
            raise ValueError("its fingerprint does not match this machine / runtime / grid")
        cached = (int(table.meta["rounds"]), int(table.meta["repeats"]))
    except (OSError, ValueError, KeyError, TypeError) as error:  # JSONDecodeError is a ValueError
        warnings.warn(f"latency table cache {path} is unusable ({error}): measuring it again", stacklevel=3)
        return None
    if cached[0] < rounds or cached[1] < repeats:
        warnings.warn(
            f"{path} was measured with rounds, repeats = {cached}, fewer than the {(rounds, repeats)} asked for: "
            "measuring again",
            stacklevel=3,
        )
        return None
    return table


def build_latency_table(
    cfg: SupernetConfig,
    scale: int,
    output_hw: tuple[int, int] = (720, 1280),
    *,
    runtime: Runtime = "openvino",
    threads: int = 2,
    precision: Precision = "f32",
    step: int = 8,
    rounds: int = 3,
    repeats: int = 3,
    warmup: int = 5,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    refresh: bool = False,
    progress: bool = True,
) -> LatencyTable:
    """Measure (or read from the cache) the latency table of ``Supernet(cfg, scale)``'s convs.

    Every conv runs at the LR size of an ``output_hw`` output (:func:`lr_size`). The grid is
    :func:`channel_grid` ``(cfg.width, step)``; four kinds (three without the 1x1 conv) of
    ``len(grid)^2`` or ``len(grid)`` convs each, so width 32 / step 8 is 60 convs.

    Noise: the grid is measured ``rounds`` times, each round in its own shuffled order, and each entry
    is the median over rounds of :func:`measure_conv_ms` (itself the median of ``repeats`` runs after
    ``warmup``). A burst of load from another process then spoils one round of scattered entries
    instead of a run of neighbouring ones, which would bend the interpolated surface.

    The cache file ``<cache_dir>/<runtime>-<key>.json`` is keyed by :func:`machine_fingerprint` plus the
    LR size, grid and kinds; it is used when its fingerprint matches and it was measured with at least
    ``rounds`` rounds of ``repeats`` repeats. ``refresh`` measures again regardless; ``use_cache=False``
    neither reads nor writes it. An unreadable or mismatched file is measured again and replaced, with
    a warning.
    """
    _check_runtime(runtime, precision)
    if scale < 1 or rounds < 1:
        raise ValueError(f"scale and rounds must be >= 1, got scale={scale}, rounds={rounds}")
    lr_hw = lr_size(scale, output_hw)
    grid = channel_grid(cfg.width, step)
    kinds = _kinds(cfg, scale, grid)
    fingerprint = {
        "format": FORMAT_VERSION,
        **machine_fingerprint(runtime, threads, precision),
        "lr_hw": list(lr_hw),
        "kinds": {kind: [kernel, list(ins), list(outs)] for kind, (kernel, ins, outs) in kinds.items()},
    }
    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = path / f"{runtime}-{key}.json"
    if use_cache and not refresh:
        cached = _read_cache(path, fingerprint, rounds, repeats)
        if cached is not None:
            cached.meta["from_cache"] = str(path)
            return cached

    start = time.perf_counter()
    entries = [
        (kind, i, j, kernel, c_in, c_out)
        for kind, (kernel, ins, outs) in kinds.items()
        for i, c_in in enumerate(ins)
        for j, c_out in enumerate(outs)
    ]
    samples: dict[tuple[str, int, int], list[float]] = {(kind, i, j): [] for kind, i, j, *_ in entries}
    description = f"latency table ({runtime}, {lr_hw[1]}x{lr_hw[0]}, {len(entries)} convs x {rounds} rounds)"
    with tqdm(total=rounds * len(entries), desc=description, disable=not progress) as bar:
        for round_index in range(rounds):
            order = np.random.default_rng(round_index).permutation(len(entries))
            for kind, i, j, kernel, c_in, c_out in (entries[k] for k in order):
                bar.set_postfix_str(f"{kind} {c_in}->{c_out}", refresh=False)
                ms = measure_conv_ms(
                    kernel,
                    c_in,
                    c_out,
                    lr_hw,
                    runtime=runtime,
                    threads=threads,
                    precision=precision,
                    repeats=repeats,
                    warmup=warmup,
                )
                samples[(kind, i, j)].append(ms)
                bar.update()
    grids = {
        kind: LayerGrid(
            kernel,
            ins,
            outs,
            tuple(tuple(statistics.median(samples[(kind, i, j)]) for j in range(len(outs))) for i in range(len(ins))),
        )
        for kind, (kernel, ins, outs) in kinds.items()
    }
    meta = {
        "fingerprint": fingerprint,
        "key": key,
        "rounds": rounds,
        "repeats": repeats,
        "warmup": warmup,
        "step": step,
        "build_seconds": time.perf_counter() - start,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    table = LatencyTable(grids, meta=meta)
    if use_cache:
        table.save(path)
    return table
