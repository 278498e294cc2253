"""The latency table of the FGNAS search cost: per-layer latency grids and their differentiable read-out.

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

A variable axis is measured at the counts ``1, step, 2 step, ..., width`` (:func:`channel_grid`) and
extended by a count of 0 whose latency is 0: a conv with no alive input or output channel is absent
from the subnet. Between grid points the table is linear in each count (bilinear in the pair); above
``width`` nothing is defined and an error is raised.

Each entry is one convolution timed by :mod:`edgesr.deploy.microbench` (ms);
:func:`edgesr.search.latency_table.build_latency_table` measures a table, or reads it from the cache
of this machine (:mod:`edgesr.search.latency_cache`). Everything else the network runs (activations,
residual adds, the channel gathers of the pruned subnet, PixelShuffle) is not in the table;
:attr:`LatencyTable.overhead_ms` is a constant that a benchmark can fit
(``benchmarks/latency_estimate.py``) and that :meth:`LatencyTable.estimate_ms` adds once per network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from edgesr.files import write_json
from edgesr.search.supernet import CountedConv

__all__ = ["FORMAT_VERSION", "LatencyTable", "LayerGrid", "channel_grid", "conv_kind"]

FORMAT_VERSION = 1
"""Bumped whenever what an entry means changes, so old cache files are not reused."""


def channel_grid(width: int, step: int) -> tuple[int, ...]:
    """Measured counts of a variable axis: ``1, step, 2 step, ..., width`` (width always included)."""
    if width < 1 or step < 1:
        raise ValueError(f"width and step must be >= 1, got width={width}, step={step}")
    return tuple(sorted({1, *range(step, width + 1, step), width}))


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

    def estimate_ms(self, convs: Sequence[CountedConv], kind_of: Callable[[CountedConv], str] = conv_kind) -> Tensor:
        """The latency regularizer: ``overhead_ms + sum_l T_kind(l)(alive_in_l, alive_out_l)`` in ms.

        Takes :meth:`Supernet.counted_convs` (counts on CPU or CUDA, forward values integers) and
        returns a 0-dim tensor on their device, differentiable w.r.t. every ``alive_in`` / ``alive_out``
        with the slope of the bilinear surface (Eq. 3 of paper 001 with ``K^2 H W c_in c_out``
        replaced by the measured latency, paper 002). ``kind_of`` names each conv's grid (default
        :func:`conv_kind`; the deploy-form convs of :mod:`edgesr.search.network_latency` have their own).
        """
        if not convs:
            raise ValueError("estimate_ms needs at least one conv")
        by_kind: dict[str, list[CountedConv]] = {}
        for conv in convs:
            by_kind.setdefault(kind_of(conv), []).append(conv)
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
