"""The whole-network latency model of the FGNAS search: what the deployed int8 graph costs, not its convs alone.

Issue 13: the per-layer conv table (:mod:`edgesr.search.latency_grid`) ranked the measured latency of
subnets with Spearman 0.65, because what it leaves out (activations, adds, concatenations, DepthToSpace,
the bicubic skip: 45 % of the deployed time) and the shapes that really run (the deploy form,
:mod:`edgesr.deploy.fgnas_form`) are not the subnet's alive counts. This model reads the supernet's gates
as the deploy form that export will write and prices every part of it (paper 002's compiler-aware
latency, on the runtime and precision the model ships in):

- **convolutions in their deployed shapes**, from a table measured on this machine
  (:func:`edgesr.search.latency_table.build_latency_table`, ``int8`` on OpenVINO: fake-quantized input
  and weights, 8-bit output). The deploy form keeps one channel space of width
  ``W = |trunk ∪ after-body|`` (Eq. 4's union), so the head writes ``W`` channels, a block's 1x1 reads
  the trunk (or is composed into the Mult convs, which then read the trunk, where that costs fewer
  Mult-Adds: :func:`edgesr.deploy.fgnas_form.merges_pointwise`; the first block that runs is composed with the
  head onto the RGB input: 5x5 Mult convs, or its 1x1 as a 3x3 conv, :func:`edgesr.deploy.fgnas_form.merges_head`), its
  Mult map is two convs, the rows with
  a (P)ReLU part and the rows with tanh (a channel with both is a row of each), its residual conv reads
  both parts concatenated and writes ``W`` (or only its ``R`` channels, appended to the trunk, when
  ``5 R <= W``: :func:`edgesr.deploy.fgnas_form.concatenates`, so later readers read ``W`` plus the
  appended channels), ``conv_after_body`` maps the trunk to ``W``
  and ``conv_last`` reads ``W``;
* **everything else** as ``c . f``: ``f`` = (activation channels, residual-add channels, channels written
  by the trunk concatenations, activation-part convolutions, 1) per network. The constant holds the fixed
  part (input and output layout, the bicubic skip, the single DepthToSpace).

``T = a . convs + c . f`` with ``a, c >= 0`` fitted by non-negative least squares, in relative error, to
the measured whole-network time of ``fit_subnets`` random subnets (half of them with pruned blocks). The
scale ``a`` is fitted, not 1: a conv timed alone, with its input and output in memory, costs several
times what it adds inside a network whose activations run fused into it (issue 13: with ``a = 1`` every
``c`` clipped at 0 and the estimate was 43 % high on held-out subnets; fitted, 3.1 %).

Both parts are differentiable in the gates where the architecture is (channel counts through the
straight-through gates of Eq. 1 and Eq. 4); the part count only moves when a block's (P)ReLU or tanh
part appears or vanishes and carries no gradient. The fitted model is cached per machine like the table.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor, nn
from tqdm import tqdm

from edgesr.deploy.fgnas_form import concatenates, merges_head, merges_pointwise
from edgesr.deploy.network_bench import NetworkPrecision, network_runner
from edgesr.files import write_json
from edgesr.search.extract import DEAD_PSI, extract_subnet, linear_columns
from edgesr.search.gates import GATE_THRESHOLD, count_alive
from edgesr.search.latency_cache import cache_file, machine_fingerprint, read_cached
from edgesr.search.latency_grid import LatencyTable, channel_grid
from edgesr.search.latency_table import build_latency_table, lr_size
from edgesr.search.settings import CountGradient, SupernetConfig
from edgesr.search.supernet import CountedConv, Supernet, SupernetGates

__all__ = [
    "FEATURES",
    "TERMS",
    "DeployedNetwork",
    "NetworkLatencyModel",
    "build_network_model",
    "deployed_kind",
    "deployed_network",
    "measure_networks_ms",
    "random_architecture",
]

FEATURES = ("activation_channels", "add_channels", "concat_channels", "part_convs", "constant")
TERMS = ("conv_table_ms", *FEATURES)  # what the coefficients multiply
_FORMAT = 10  # 2: one Mult conv per activation part (deploy form); 3: the conv table's scale is fitted;
# 4: fitted in relative error on subnets that include closed blocks; 5: the bicubic skip's Add in float too;
# 6: the bicubic skip in int8 on exact taps (quant.exact_skip); 7: whole networks timed without OpenVINO's
# input and extra output copies (deploy.runtimes.openvino_runner); 8: narrow residual writes appended to the
# trunk (deploy.fgnas_form.concatenates), priced by the new concat_channels feature; 9: a 1x1 conv composed
# into the Mult convs where that costs fewer Mult-Adds (deploy.fgnas_form.merges_pointwise); 10: the first block's
# convs composed with the head onto the RGB input (deploy.fgnas_form.merges_head), priced by the image5x5 kind
# Change how the search moves or which subnet it keeps, not the deployed graphs the model prices: the fit
# subnets are drawn with min_mult_channels 1 whatever the search's setting (measured_subnets).
#: Supernet settings that steer the search but not what a subnet's deploy form runs: left out of the model's key.
_SEARCH_ONLY_FIELDS = {
    "gate_init",
    "count_gradient",
    "min_mult_channels",
    "gate_lr_scale",
    "mult_gate_gradient",
    "block_pressure",
}


def _branch_parts(mult: Tensor, names: list[str], mode: CountGradient) -> tuple[Tensor, Tensor]:
    """Per Mult channel: does it keep a (P)ReLU part, does it keep tanh (1 / 0, straight-through).

    ``mult`` is a block's ``(C, M)`` gates: one column per activation branch, or a single column shared
    by every branch when the activations are not searched.
    """
    if mult.shape[1] != len(names):  # one gate per channel for every branch
        mult = mult.expand(-1, len(names))
    linear = linear_columns(names)
    has_linear = count_alive(mult[:, linear], mode) if linear else torch.zeros_like(mult[:, 0])
    has_tanh = mult[:, names.index("tanh")] if "tanh" in names else torch.zeros_like(mult[:, 0])
    return has_linear, has_tanh


def _alive(channels: Tensor) -> Tensor:
    """1 when any channel is kept (forward), with the gradient of the count below one kept channel."""
    return channels.sum().clamp(max=1.0)


def deployed_kind(conv: CountedConv) -> str:
    """The table kind of a conv of :class:`DeployedNetwork`: head, last, residual, conv1x1, conv3x3, or image5x5 for
    the first block's Mult parts composed with the head (its 1x1 composed with the head is a head-like conv)."""
    if conv.name in ("head", "last"):
        return conv.name
    if conv.name.endswith(".pointwise") and conv.kernel == 3:
        return "head"
    if conv.kernel == 5:
        return "image5x5"
    if conv.name.endswith(".residual"):
        return "residual"
    return f"conv{conv.kernel}x{conv.kernel}"


@dataclass(frozen=True)
class DeployedNetwork:
    """The deploy form of a supernet's current architecture, counts differentiable in the gates.

    ``convs``: every conv in its deployed shape. A pruned block (no residual channel) and an after-body
    conv with no channel are absent (0 channels). ``features``: :data:`FEATURES`, the activation, add and
    concatenated channels (differentiable), the activation-part convs and 1.
    """

    convs: list[CountedConv]
    features: Tensor


def deployed_network(supernet: Supernet, gates: SupernetGates | None = None) -> DeployedNetwork:
    """Read ``supernet``'s gates as the deploy form that export writes (one pass, the search's hot loop)."""
    gates = gates if gates is not None else supernet.gates()
    names: list[str] = list(supernet.cfg.activations)
    mode = supernet.cfg.count_gradient
    maps = [gates.head, *(block.residual for block in gates.blocks), gates.after_body]
    width = count_alive(torch.stack(maps, dim=-1), mode).sum()  # W: trunk ∪ after-body, the one channel space
    one = torch.ones((), device=width.device)
    convs = [CountedConv("head", 3, 3.0 * one, width)]
    activations = adds = appended = torch.zeros((), device=width.device)
    trunk = width  # channels of the trunk tensor: the space, then every appended residual write
    space = round(float(width.detach()))  # one host sync per read-out, not one per block
    parts, first = 0, supernet.first_running_block(gates)
    for index, block in enumerate(gates.blocks):
        alive = _alive(block.residual)
        reads = trunk * alive
        has_linear, has_tanh = _branch_parts(block.mult, names, mode)
        concatenated = (has_linear + has_tanh).sum() * alive
        mult_in, kernel = reads, 3
        if index == first:  # composed with the head onto the RGB input (edgesr.deploy.fgnas_form._from_image)
            mult_in, kernel = 3.0 * one, 5
        if block.pointwise is not None:
            pointwise = block.pointwise.sum() * alive
            counts = torch.stack((reads, pointwise, concatenated)).detach().round().int().tolist()  # one host sync
            if index == first and not merges_head(*counts[1:]):
                convs.append(CountedConv(f"block{index}.pointwise", 3, mult_in, pointwise))
                mult_in, kernel = pointwise, 3
            elif index != first and not merges_pointwise(*counts):
                convs.append(CountedConv(f"block{index}.pointwise", 1, reads, pointwise))
                mult_in = pointwise
        for part, channels in (("linear", has_linear), ("tanh", has_tanh)):
            convs.append(CountedConv(f"block{index}.mult_{part}", kernel, mult_in, channels.sum() * alive))
        writes = block.residual.sum() * alive
        if concatenates(round(float(writes.detach())), space):
            convs.append(CountedConv(f"block{index}.residual", 3, concatenated, writes))
            appended = appended + (trunk + writes) * alive  # cat(trunk, r) copies both
            trunk = trunk + writes
        else:
            convs.append(CountedConv(f"block{index}.residual", 3, concatenated, reads))
            adds = adds + reads
        activations = activations + concatenated
        if float(alive.detach()) > 0:
            parts += int(float(has_linear.detach().sum()) > 0) + int(float(has_tanh.detach().sum()) > 0)
    after = _alive(gates.after_body)
    convs.append(CountedConv("after_body", 3, trunk * after, width * after))
    convs.append(CountedConv("last", 3, width, float(3 * supernet.scale**2) * one))
    adds = adds + width * after  # the global skip closes on conv_after_body's output
    return DeployedNetwork(convs, torch.stack([activations, adds, appended, one * parts, one]))


def network_kinds(
    cfg: SupernetConfig, scale: int, step: int
) -> dict[str, tuple[int, tuple[int, ...], tuple[int, ...]]]:
    """The conv kinds of the deploy form for the table: kind -> (kernel, in counts, out counts)."""
    grid = channel_grid(cfg.width, step)
    mult = channel_grid(cfg.mult_map_width, step)
    wide = channel_grid(2 * cfg.mult_map_width, step)  # concatenated activations: up to two per Mult channel
    # a reader of the trunk: the space plus every block's appended write (at most a fifth of it each)
    trunk = channel_grid(cfg.width + cfg.num_blocks * (cfg.width // 5), step)
    kinds = {
        "head": (3, (3,), grid),
        "image5x5": (5, (3,), mult),
        "conv3x3": (3, trunk, channel_grid(cfg.widest_map, step)),  # Mult parts, after-body
        "residual": (3, wide, trunk),
    }
    if cfg.pointwise:
        kinds["conv1x1"] = (1, trunk, grid)
    kinds["last"] = (3, grid, (3 * scale * scale,))
    return kinds


@dataclass
class NetworkLatencyModel:
    """``T(psi) = a . sum_convs table(kind, in, out) + c . f(psi)`` in ms, ``coefficients = (a, *c)``
    (module docstring)."""

    table: LatencyTable
    coefficients: tuple[float, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def conv_ms(self, network: DeployedNetwork) -> Tensor:
        return self.table.estimate_ms(network.convs, kind_of=deployed_kind)

    def estimate_ms(self, supernet: Supernet, gates: SupernetGates | None = None) -> Tensor:
        """The whole network's latency estimate (ms), a 0-dim tensor differentiable w.r.t. the gates."""
        network = deployed_network(supernet, gates)
        conv_scale, *rest = self.coefficients
        weights = torch.tensor(rest, device=network.features.device, dtype=network.features.dtype)
        return conv_scale * self.conv_ms(network) + (network.features * weights).sum()

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "terms": list(TERMS),
            "coefficients": list(self.coefficients),
            "meta": self.meta,
            "table": self.table.as_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkLatencyModel:
        if data.get("format") != _FORMAT or data.get("terms") != list(TERMS):
            raise ValueError(f"network latency model format {data.get('format')!r}, expected {_FORMAT}")
        return cls(LatencyTable.from_dict(data["table"]), tuple(data["coefficients"]), dict(data.get("meta", {})))


def random_architecture(
    supernet: Supernet, open_fraction: float, generator: torch.Generator, close_blocks: bool = False
) -> None:
    """Set every psi to a random value, ``open_fraction`` of them above the threshold on average.

    ``close_blocks``: also close each block (every gate below the threshold) with probability
    ``1 - open_fraction``, so that thin networks with pruned blocks, where a latency search ends, are drawn
    too (independent gates alone almost never close a block).
    """
    with torch.no_grad():
        for psi in supernet.gate_parameters():
            uniform = torch.rand(psi.shape, generator=generator)
            psi.copy_(uniform + open_fraction - (1.0 - GATE_THRESHOLD))  # open iff uniform > 1 - fraction
        if close_blocks:
            closed = torch.rand(len(supernet.blocks()), generator=generator) > open_fraction
            for block, close in zip(supernet.blocks(), closed.tolist(), strict=True):
                if not close:
                    continue
                for gate in (block.psi_pointwise, block.psi_mult, block.psi_residual):
                    if gate is not None:
                        gate.clamp_(max=DEAD_PSI)


def time_round_robin(
    runners: list[Any], x: np.ndarray, rounds: int, warmup: int, desc: str, settle_s: float = 0.0
) -> list[float]:
    """Median ms of each runner over ``rounds`` rounds of one run each, so load from other work spreads evenly,
    after ``settle_s`` seconds idle (a machine that has just trained runs slow for a while: see
    :class:`edgesr.search.settings.LatencyBudget`'s ``settle_s``)."""
    time.sleep(settle_s)
    for runner in runners:
        for _ in range(warmup):
            runner(x)
    times: list[list[float]] = [[] for _ in runners]
    for _ in tqdm(range(rounds), desc=desc, leave=False):
        for index, runner in enumerate(runners):
            start = time.perf_counter()
            runner(x)
            times[index].append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def measure_networks_ms(
    models: Sequence[nn.Module],
    lr_hw: tuple[int, int],
    *,
    precision: NetworkPrecision,
    threads: int,
    float_modules: Sequence[str],
    rounds: int = 15,
    warmup: int = 3,
    settle_s: float = 0.0,
    desc: str = "timing networks",
) -> list[float]:
    """Median ms of each model's deployed form on OpenVINO (:func:`network_runner`), in the order given, timed in
    the same round-robin rounds (:func:`time_round_robin`) so that a side-by-side comparison shares the load."""
    runners = [
        network_runner(model, lr_hw, precision=precision, threads=threads, float_modules=float_modules)
        for model in tqdm(models, desc=f"deploying ({precision})", leave=False)
    ]
    x = np.random.default_rng(0).random((1, 3, *lr_hw), dtype=np.float32)
    return time_round_robin(runners, x, rounds, warmup, desc, settle_s)


def measured_subnets(
    cfg: SupernetConfig,
    scale: int,
    lr_hw: tuple[int, int],
    count: int,
    seed: int,
    *,
    precision: NetworkPrecision,
    threads: int,
    float_modules: Sequence[str],
    rounds: int,
    warmup: int,
    settle_s: float = 0.0,
) -> list[tuple[Supernet, float]]:
    """``count`` random architectures of ``Supernet(cfg, scale)`` (10 % .. 90 % of the gates open, every
    other one with blocks closed too, cleaned) with the measured latency (ms) of their deployed form, timed
    round-robin."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    fractions = np.random.default_rng(seed).permutation(np.linspace(0.1, 0.9, count))
    nets, subnets = [], []
    any_width = cfg.model_copy(update={"min_mult_channels": 1})  # narrow Mult maps are priced too
    for index, fraction in enumerate(fractions):
        supernet = Supernet(any_width, scale).eval()
        random_architecture(supernet, float(fraction), generator, close_blocks=index % 2 == 1)
        subnets.append(extract_subnet(supernet).eval())  # cleans the gates: the supernet now reads as the subnet
        nets.append(supernet)
    measured = measure_networks_ms(
        subnets,
        lr_hw,
        precision=precision,
        threads=threads,
        float_modules=float_modules,
        rounds=rounds,
        warmup=warmup,
        settle_s=settle_s,
        desc="timing subnets",
    )
    return list(zip(nets, measured, strict=True))


def network_terms(table: LatencyTable, nets: Sequence[Supernet]) -> np.ndarray:
    """The values :data:`TERMS` multiply, one row per network: its conv-table estimate and its features."""
    model = NetworkLatencyModel(table, (0.0,) * len(TERMS))
    with torch.no_grad():
        networks = [deployed_network(net) for net in nets]
        return np.array([[float(model.conv_ms(network)), *network.features.double().tolist()] for network in networks])


def fit_coefficients(terms: np.ndarray, measured: np.ndarray) -> tuple[float, ...]:
    """Non-negative least squares of the measured times (ms) on their :func:`network_terms`, in relative
    error: every row is divided by its measured time, so a 15 ms subnet weighs as much as a 100 ms one, as
    the budget's band is relative. (Measured on 20 held-out subnets, issue 13: what made thin subnets
    right was fitting on subnets with pruned blocks, MAPE 26 % -> 6 % on those; the weighting itself
    changed the MAPE by 0.1-0.6 points.)"""
    solution, _ = nnls(terms / measured[:, None], np.ones_like(measured))
    return tuple(float(c) for c in solution)


def build_network_model(
    cfg: SupernetConfig,
    scale: int,
    output_hw: tuple[int, int] = (720, 1280),
    *,
    precision: NetworkPrecision = "int8",
    threads: int = 2,
    step: int = 8,
    fit_subnets: int = 20,
    float_modules: Sequence[str] = (),
    seed: int = 0,
    rounds: int = 15,
    warmup: int = 3,
    cache_dir: str | os.PathLike[str] | None = None,
    refresh: bool = False,
    settle_s: float = 0.0,
) -> NetworkLatencyModel:
    """Measure (or read from this machine's cache) the conv table and fit the rest on random subnets.

    ``float_modules`` are kept in float in int8, as ``quantize.float_modules`` keeps them in the deployed
    models; the subnets are timed after ``settle_s`` seconds idle."""
    table = build_latency_table(
        cfg,
        scale,
        output_hw,
        precision=precision,
        threads=threads,
        step=step,
        cache_dir=cache_dir,
        refresh=refresh,
        kinds=network_kinds(cfg, scale, step),
    )
    lr_hw = lr_size(scale, output_hw)
    fingerprint = {
        "network_model": _FORMAT,
        **machine_fingerprint("openvino", threads, precision),
        "lr_hw": list(lr_hw),
        "supernet": cfg.model_dump(mode="json", exclude=_SEARCH_ONLY_FIELDS),
        "scale": scale,
        "table": table.meta.get("key"),
        "fit": {"subnets": fit_subnets, "seed": seed, "rounds": rounds},
        "float_modules": sorted(float_modules),
    }
    path, key = cache_file(cache_dir, "network", fingerprint)
    cached = None if refresh else read_cached(path, fingerprint, NetworkLatencyModel.from_dict, "network latency model")
    if cached is not None:
        return cached
    start = time.perf_counter()
    samples = measured_subnets(
        cfg,
        scale,
        lr_hw,
        fit_subnets,
        seed,
        precision=precision,
        threads=threads,
        float_modules=float_modules,
        rounds=rounds,
        warmup=warmup,
        settle_s=settle_s,
    )
    terms, measured = network_terms(table, [net for net, _ in samples]), np.array([ms for _, ms in samples])
    coefficients = fit_coefficients(terms, measured)
    meta = {
        "fingerprint": fingerprint,
        "key": key,
        "fit_ms": measured.tolist(),
        "fit_terms": terms.tolist(),  # to refit or audit the model
        "build_seconds": time.perf_counter() - start,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    model = NetworkLatencyModel(table, coefficients, meta)
    write_json(Path(path), model.as_dict())
    return model
