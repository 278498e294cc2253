"""This machine's latency table of a supernet: measured once on the deployment runtime, then read from the cache.

:func:`build_latency_table` times every entry of the table (:mod:`edgesr.search.latency_grid`) with
:mod:`edgesr.deploy.microbench` and keeps the result in the per-machine cache
(:mod:`edgesr.search.latency_cache`). What one entry measures (units: milliseconds): the median over
``rounds`` interleaved passes of the median of ``repeats`` runs after ``warmup`` runs of a single conv
at the LR size of an ``output_hw`` output (640x360 for 1280x720 at x2).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from edgesr.deploy.microbench import InferencePrecision, check_runtime, measure_conv_ms
from edgesr.deploy.settings import ExportRuntime
from edgesr.search.latency_cache import cache_file, machine_fingerprint, read_cached_table
from edgesr.search.latency_grid import FORMAT_VERSION, LatencyTable, LayerGrid, channel_grid
from edgesr.search.settings import SupernetConfig

__all__ = ["build_latency_table", "lr_size"]


def lr_size(scale: int, output_hw: tuple[int, int] = (720, 1280)) -> tuple[int, int]:
    """LR size ``(ceil(H / s), ceil(W / s))`` at which every supernet conv runs (DESIGN.md complexity)."""
    return -(-output_hw[0] // scale), -(-output_hw[1] // scale)


def _kinds(cfg: SupernetConfig, scale: int, step: int) -> dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]]:
    """kind -> (kernel, in counts, out counts) for the convs of ``Supernet(cfg, scale)``: the 3x3 convs read and
    write up to the wider of the trunk and the Mult map."""
    grid = channel_grid(cfg.width, step)
    kinds: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] = {"head": (3, (3,), grid)}
    if cfg.pointwise:
        kinds["conv1x1"] = (1, grid, grid)
    wider = channel_grid(cfg.widest_map, step)
    kinds["conv3x3"] = (3, wider, wider)
    kinds["last"] = (3, grid, (3 * scale * scale,))
    return kinds


def build_latency_table(
    cfg: SupernetConfig,
    scale: int,
    output_hw: tuple[int, int] = (720, 1280),
    *,
    runtime: ExportRuntime = "openvino",
    threads: int = 2,
    precision: InferencePrecision = "f32",
    step: int = 8,
    rounds: int = 3,
    repeats: int = 3,
    warmup: int = 5,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    refresh: bool = False,
    progress: bool = True,
    kinds: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]] | None = None,
) -> LatencyTable:
    """Measure (or read from the cache) the latency table of ``Supernet(cfg, scale)``'s convs.

    Every conv runs at the LR size of an ``output_hw`` output (:func:`lr_size`). The grid is
    :func:`channel_grid` ``(cfg.width, step)``, the 3x3 kind's up to ``cfg.widest_map``; four kinds
    (three without the 1x1 conv) of ``len(grid)^2`` or ``len(grid)`` convs each, so width 32 / step 8 is 60 convs.

    Noise: the grid is measured ``rounds`` times, each round in its own shuffled order, and each entry
    is the median over rounds of :func:`measure_conv_ms` (itself the median of ``repeats`` runs after
    ``warmup``). A burst of load from another process then spoils one round of scattered entries
    instead of a run of neighbouring ones, which would bend the interpolated surface.

    The cache file ``<cache_dir>/<runtime>-<key>.json`` (:mod:`edgesr.search.latency_cache`) is keyed by
    the machine fingerprint plus the LR size, grid and kinds; it is used when its fingerprint matches
    and it was measured with at least ``rounds`` rounds of ``repeats`` repeats. ``refresh`` measures
    again regardless; ``use_cache=False`` neither reads nor writes it. An unreadable or mismatched file
    is measured again and replaced, with a warning. ``kinds`` (kind -> kernel, in counts, out counts)
    replaces the supernet's own conv kinds, e.g. by the deploy form's
    (:func:`edgesr.search.network_latency.network_kinds`).
    """
    check_runtime(runtime, precision)
    if scale < 1 or rounds < 1:
        raise ValueError(f"scale and rounds must be >= 1, got scale={scale}, rounds={rounds}")
    lr_hw = lr_size(scale, output_hw)
    kinds = kinds if kinds is not None else _kinds(cfg, scale, step)
    fingerprint = {
        "format": FORMAT_VERSION,
        **machine_fingerprint(runtime, threads, precision),
        "lr_hw": list(lr_hw),
        "kinds": {kind: [kernel, list(ins), list(outs)] for kind, (kernel, ins, outs) in kinds.items()},
    }
    path, key = cache_file(cache_dir, runtime, fingerprint)
    if use_cache and not refresh:
        cached = read_cached_table(path, fingerprint, rounds, repeats)
        if cached is not None:
            return cached

    start = time.perf_counter()
    samples = _measure(
        kinds,
        lr_hw,
        rounds,
        progress,
        runtime=runtime,
        threads=threads,
        precision=precision,
        repeats=repeats,
        warmup=warmup,
    )
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


def _measure(
    kinds: dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]],
    lr_hw: tuple[int, int],
    rounds: int,
    progress: bool,
    **measure: Any,
) -> dict[tuple[str, int, int], list[float]]:
    """``rounds`` measurements of every entry (kind, in index, out index), each round in its own shuffled order.

    ``measure``: the keyword arguments of :func:`measure_conv_ms` (runtime, threads, precision, repeats, warmup).
    """
    entries = [
        (kind, i, j, kernel, c_in, c_out)
        for kind, (kernel, ins, outs) in kinds.items()
        for i, c_in in enumerate(ins)
        for j, c_out in enumerate(outs)
    ]
    samples: dict[tuple[str, int, int], list[float]] = {(kind, i, j): [] for kind, i, j, *_ in entries}
    description = f"latency table ({measure['runtime']}, {lr_hw[1]}x{lr_hw[0]}, {len(entries)} convs x {rounds} rounds)"
    with tqdm(total=rounds * len(entries), desc=description, disable=not progress) as bar:
        for round_index in range(rounds):
            order = np.random.default_rng(round_index).permutation(len(entries))
            for kind, i, j, kernel, c_in, c_out in (entries[k] for k in order):
                bar.set_postfix_str(f"{kind} {c_in}->{c_out}", refresh=False)
                samples[(kind, i, j)].append(measure_conv_ms(kernel, c_in, c_out, lr_hw, **measure))
                bar.update()
    return samples
