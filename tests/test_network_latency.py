"""The whole-network latency model (issue 13): the deploy form read from the gates, the fit of the rest."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesr.architectures import PlainResNetConfig
from edgesr.deploy.fgnas_form import DeployedFGNAS, deploy_form
from edgesr.models.plain_resnet import build_plain_resnet
from edgesr.search import network_latency
from edgesr.search.extract import extract_subnet
from edgesr.search.latency_grid import LatencyTable, LayerGrid, channel_grid
from edgesr.search.network_latency import (
    FEATURES,
    TERMS,
    NetworkLatencyModel,
    build_network_model,
    deployed_kind,
    deployed_network,
    fit_coefficients,
    measure_networks_ms,
    network_kinds,
    network_terms,
    random_architecture,
)
from edgesr.search.settings import SupernetConfig
from edgesr.search.supernet import Supernet


def _random_subnet(
    seed: int, fraction: float, mult_channels: int | None = None, closed: int = 0, **cfg
) -> tuple[Supernet, DeployedFGNAS]:
    """A random subnet; ``mult_channels=k`` closes every Mult gate past channel k (so wide 1x1 convs merge),
    ``closed=k`` the first k blocks (so block k is the first that runs, composed with the head)."""
    torch.manual_seed(seed)
    supernet = Supernet(SupernetConfig(num_blocks=4, width=16, bicubic_skip=True, **cfg), 2)
    random_architecture(supernet, fraction, torch.Generator().manual_seed(seed))
    if mult_channels is not None:
        with torch.no_grad():
            for block in supernet.body:
                block.psi_mult[mult_channels:] = 0.0
    with torch.no_grad():
        for block in supernet.blocks()[:closed]:
            block.psi_residual.fill_(0.0)
    return supernet, deploy_form(extract_subnet(supernet))


def _conv_shapes(deployed: DeployedFGNAS) -> dict[str, tuple[int, int, int]]:
    """(kernel, in, out) per deployed conv, a block's Mult part convs as ``mult_linear`` / ``mult_tanh``."""

    def shape(conv: torch.nn.Conv2d) -> tuple[int, int, int]:
        return conv.kernel_size[0], conv.in_channels, conv.out_channels

    shapes = {"head": shape(deployed.conv_first), "last": shape(deployed.conv_last)}
    for index, block in enumerate(deployed.body):
        if block.conv_pointwise is not None:
            shapes[f"pointwise{index}"] = shape(block.conv_pointwise)
        for conv, activation in zip(block.part_convs, block.part_activations, strict=True):
            part = "tanh" if isinstance(activation, torch.nn.Tanh) else "linear"
            shapes[f"mult_{part}{index}"] = shape(conv)
        shapes[f"residual{index}"] = shape(block.conv_residual)
    if deployed.conv_after_body is not None:
        shapes["after"] = shape(deployed.conv_after_body)
    return shapes


@pytest.mark.parametrize(
    ("seed", "fraction", "cfg"),
    # seed 1 and 4 mix appended (narrow) and added residual writes, 4 with Mult convs reading the trunk;
    # seed 5 has blocks whose 1x1 is composed into the Mult convs and blocks that keep it; the first block is
    # composed with the head: into 5x5 Mult convs on the RGB input in seeds 2, 4 and 5, its 1x1 into a 3x3 in 0 and 1;
    # in seed 6 blocks 0 and 1 are closed and block 2 is the first that runs
    [
        (0, 0.5, {}),
        (1, 0.3, {}),
        (2, 0.7, {"pointwise": False}),
        (4, 0.25, {"pointwise": False}),
        (5, 0.7, {"mult_channels": 2}),
        (6, 0.7, {"closed": 2}),
        (0, 0.5, {"mult_width": 40}),  # wide activation: Mult maps of up to 40 channels in a 16-channel trunk
        (2, 0.7, {"pointwise": False, "mult_width": 40}),
    ],
)
def test_deployed_convs_and_features_are_the_deploy_form_that_export_writes(seed, fraction, cfg):
    supernet, deployed = _random_subnet(seed, fraction, **cfg)
    if "mult_channels" in cfg:
        assert {block.conv_pointwise is None for block in deployed.body} == {True, False}
    first = deployed.body[0]  # composed with the head: 5x5 Mult convs (narrow Mult maps), or its 1x1 as a 3x3
    assert first.reads_image and supernet.first_running_block() == cfg.get("closed", 0)
    if "closed" not in cfg:
        assert (first.conv_pointwise is None) == ("mult_channels" in cfg or not supernet.cfg.pointwise)
    with torch.no_grad():
        network = deployed_network(supernet)
    counted = network.convs
    features = dict(zip(FEATURES, network.features.tolist(), strict=True))
    alive = [conv for conv in counted if float(conv.alive_out) > 0 and float(conv.alive_in) > 0]
    names = {"head": "head", "last": "last", "after_body": "after"}
    predicted = {}
    for conv in alive:
        block, _, part = conv.name.partition(".")
        key = names.get(conv.name) or f"{part}{_block_position(supernet, block)}"
        predicted[key] = (conv.kernel, round(float(conv.alive_in)), round(float(conv.alive_out)))
    assert predicted == _conv_shapes(deployed)
    assert features["activation_channels"] == sum(b.conv_residual.in_channels for b in deployed.body)
    width = deployed.conv_first.out_channels
    trunk, adds, appended = width, 0, 0
    for block in deployed.body:  # a narrow write is appended (the trunk grows), a wide one added
        if block.concatenate:
            appended += trunk + block.conv_residual.out_channels
            trunk += block.conv_residual.out_channels
        else:
            adds += trunk
    skip_add = width if deployed.conv_after_body is not None else 0
    assert features["add_channels"] == adds + skip_add
    assert features["concat_channels"] == appended
    assert features["part_convs"] == sum(len(b.part_convs) for b in deployed.body)
    assert {deployed_kind(c) for c in counted} <= set(network_kinds(supernet.cfg, 2, 8))
    full = Supernet(supernet.cfg, 2)  # every gate open: the table's grids cover the widest deployed convs
    assert NetworkLatencyModel(_linear_table(full.cfg), (1.0,) + (0.0,) * len(FEATURES)).estimate_ms(full) > 0


def _block_position(supernet: Supernet, block: str) -> int:
    """Position among the kept blocks of ``block{i}`` (the deploy form drops pruned blocks)."""
    index = int(block.removeprefix("block"))
    kept = [i for i, b in enumerate(supernet.gates().blocks) if float(b.residual.detach().sum()) > 0]
    return kept.index(index)


def _linear_table(cfg: SupernetConfig) -> LatencyTable:
    """A synthetic table: ms = 1e-3 * k^2 * in * out on every grid point (no measurement)."""
    grids = {}
    for kind, (kernel, ins, outs) in network_kinds(cfg, 2, 4).items():
        grids[kind] = LayerGrid(kernel, ins, outs, tuple(tuple(1e-3 * kernel**2 * i * o for o in outs) for i in ins))
    return LatencyTable(grids)


def test_fit_recovers_the_conv_scale_and_the_non_conv_coefficients_and_the_estimate_has_gate_gradients():
    cfg = SupernetConfig(num_blocks=3, width=8)
    table, truth = _linear_table(cfg), (0.4, 0.05, 0.02, 0.01, 0.3, 4.0)
    samples = []
    for seed in range(12):
        torch.manual_seed(seed)
        net = Supernet(cfg, 2)
        random_architecture(net, 0.2 + 0.05 * seed, torch.Generator().manual_seed(seed))
        extract_subnet(net)  # cleans the gates
        with torch.no_grad():
            exact = NetworkLatencyModel(table, truth).estimate_ms(net)
        samples.append((net, float(exact)))
    terms = network_terms(table, [net for net, _ in samples])
    assert fit_coefficients(terms, np.array([ms for _, ms in samples])) == pytest.approx(truth, abs=1e-5)
    net = samples[3][0]
    NetworkLatencyModel(table, truth).estimate_ms(net).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.gate_parameters())


def test_the_fit_minimises_relative_error_so_thin_subnets_count_as_much_as_large_ones():
    """Measured times off the model by a factor (1 + e): the fit is NNLS on rows divided by the measured
    time, so it minimises sum (estimate / measured - 1)^2: no other non-negative coefficients do better,
    and the unweighted fit (which the large subnets would set) does strictly worse."""
    from scipy.optimize import nnls

    cfg = SupernetConfig(num_blocks=3, width=8)
    table, truth = _linear_table(cfg), np.array([0.4, 0.05, 0.02, 0.01, 0.3, 4.0])
    nets = []
    for seed in range(16):
        torch.manual_seed(seed)
        net = Supernet(cfg, 2)
        random_architecture(net, 0.1 + 0.05 * seed, torch.Generator().manual_seed(seed), close_blocks=seed % 2 == 1)
        extract_subnet(net)
        nets.append(net)
    design = network_terms(table, nets)
    measured = design @ truth * (1 + 0.3 * np.random.default_rng(0).standard_normal(len(nets)))

    def relative_errors(coefficients) -> np.ndarray:
        return design @ np.asarray(coefficients) / measured - 1

    fitted = fit_coefficients(design, measured)
    unweighted, _ = nnls(design, measured)
    assert min(fitted) >= 0
    best = float(np.sum(relative_errors(fitted) ** 2))
    for other in (truth, np.array(fitted) * 1.01, np.array(fitted) + [0, 0, 0, 0, 0, 0.1]):
        assert best <= float(np.sum(relative_errors(other) ** 2)) + 1e-9
    assert best < float(np.sum(relative_errors(unweighted) ** 2)) - 1e-3


def test_random_architectures_with_closed_blocks_cover_thin_networks():
    """``close_blocks`` closes each block with probability 1 - open fraction: at 10 % open most blocks of
    a subnet are pruned, at 90 % few; without it independent gates almost never close a whole block."""

    def closed_blocks(fraction: float, close: bool, seed: int) -> int:
        net = Supernet(SupernetConfig(num_blocks=8, width=16), 2)
        random_architecture(net, fraction, torch.Generator().manual_seed(seed), close_blocks=close)
        extract_subnet(net)
        return sum(float(b.residual.sum()) == 0 for b in net.gates().blocks)

    thin = [closed_blocks(0.1, True, seed) for seed in range(10)]
    wide = [closed_blocks(0.9, True, seed) for seed in range(10)]
    assert np.mean(thin) > 5 and np.mean(wide) < 2
    assert sum(closed_blocks(0.5, False, seed) for seed in range(10)) == 0


def test_a_table_too_narrow_for_the_concatenated_activations_is_refused():
    cfg = SupernetConfig(num_blocks=2, width=8)
    narrow = {k: v for k, v in _linear_table(cfg).grids.items() if k != "residual"}
    narrow["residual"] = LayerGrid(3, channel_grid(8, 4), channel_grid(8, 4), ((1.0,) * 3,) * 3)
    net = Supernet(cfg, 2)  # every gate open: 16 activation channels per block, more than 8
    with pytest.raises(ValueError, match="residual alive_in .* outside the latency table"):
        NetworkLatencyModel(LatencyTable(narrow), (1.0,) + (0.0,) * 4).estimate_ms(net)


def test_measure_networks_ms_times_the_int8_deployed_form_on_openvino():
    supernet, _ = _random_subnet(4, 0.5)
    subnet = extract_subnet(supernet).eval()
    small, large = (
        measure_networks_ms([subnet], hw, precision="int8", threads=1, float_modules=["bicubic"], rounds=5)[0]
        for hw in ((24, 32), (192, 256))
    )
    assert 0 < small < large / 4  # 64x the pixels


def test_measure_networks_ms_times_each_model_in_the_order_given_in_shared_rounds():
    """Real OpenVINO int8: a plain net of no blocks and one of six wide blocks (420x its Mult-Adds), timed
    in the same rounds: each median follows its model."""
    small = build_plain_resnet(PlainResNetConfig(width=8, num_blocks=0, skip="none"), 2).eval()
    large = build_plain_resnet(PlainResNetConfig(width=64, num_blocks=6, skip="bicubic"), 2).eval()
    settings = {"precision": "int8", "threads": 1, "float_modules": ["bicubic"], "rounds": 5}
    small_ms, large_ms = measure_networks_ms([small, large], (192, 256), **settings)
    assert 0 < small_ms < large_ms / 2


def test_a_real_build_measures_fits_and_then_reads_the_cache(tmp_path, monkeypatch):
    """Real OpenVINO int8: the conv table, 5 subnets quantized by NNCF and timed whole, NNLS; then the cache."""
    cfg = SupernetConfig(num_blocks=2, width=4, bicubic_skip=True)
    build = {"precision": "int8", "threads": 1, "step": 2, "fit_subnets": 5, "rounds": 2, "cache_dir": tmp_path}
    model = build_network_model(cfg, 2, (32, 48), **build)
    assert len(model.coefficients) == len(TERMS) and min(model.coefficients) >= 0
    assert len(model.meta["fit_ms"]) == 5 and all(ms > 0 for ms in model.meta["fit_ms"])
    net = Supernet(cfg, 2)
    assert float(model.estimate_ms(net)) > 0 and float(model.conv_ms(deployed_network(net))) > 0
    assert len(list(tmp_path.glob("network-*.json"))) == 1 and len(list(tmp_path.glob("openvino-*.json"))) == 1

    def must_not_measure(*args, **kwargs):
        raise AssertionError("a cached model was measured again")

    monkeypatch.setattr(network_latency, "measured_subnets", must_not_measure)
    cached = build_network_model(cfg, 2, (32, 48), **build)
    assert cached.coefficients == model.coefficients and cached.table.grids == model.table.grids
    assert cached.meta["from_cache"].endswith(".json")
    steering = {"gate_init": 0.6, "count_gradient": "shared", "min_mult_channels": 2, "gate_lr_scale": 0.5}
    steering |= {"mult_gate_gradient": "unscaled", "block_pressure": "weakest"}
    steered = SupernetConfig.model_validate(cfg.model_dump() | steering)  # steers the search, not the deploy form
    assert build_network_model(steered, 2, (32, 48), **build).coefficients == model.coefficients
    (network_file,) = tmp_path.glob("network-*.json")
    network_file.write_text("{not json")
    with pytest.warns(UserWarning, match=r"network latency model cache .*network-.*\.json is unusable"):
        with pytest.raises(AssertionError, match="measured again"):  # an unreadable file is measured again
            build_network_model(cfg, 2, (32, 48), **build)


def test_the_search_settles_before_its_first_measurement_only(monkeypatch):
    """A machine that has just trained runs slow for a while (measured: 1.35x for ~45 s), so the found
    subnet's first measurement waits ``settle_s`` idle; the re-projection rounds that follow do not."""
    from edgesr.search.settings import LatencyBudget
    from edgesr.stages.search import latency_measure

    settles: list[float] = []
    monkeypatch.setattr(network_latency.time, "sleep", settles.append)
    monkeypatch.setattr(network_latency, "network_runner", lambda *args, **kwargs: lambda x: None)
    measure = latency_measure(LatencyBudget(target_ms=10.0, settle_s=30.0), 2, (32, 48))
    supernet, _ = _random_subnet(5, 0.5)
    assert all(measure(supernet) >= 0 for _ in range(3))
    assert settles == [30.0, 0.0, 0.0]
