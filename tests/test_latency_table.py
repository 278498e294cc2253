"""The FGNAS latency table (paper 002's compiler-aware latency in place of Eq. 3 of paper 001).

The interpolation math is tested on synthetic tables with known numbers (no timing); one tiny real
OpenVINO build checks that measured entries are positive and finite. No wall-clock assertions.
"""

from __future__ import annotations

import json

import pytest
import torch

from edgesr.search import latency_cache, latency_table
from edgesr.search.latency_grid import LatencyTable, LayerGrid, channel_grid, conv_kind
from edgesr.search.latency_table import build_latency_table, lr_size
from edgesr.search.settings import SupernetConfig
from edgesr.search.supernet import CountedConv, Supernet

COUNTS = (1, 4, 8)


def surface(c_in: float, c_out: float) -> float:
    """A non-bilinear function, so that interpolation between grid points is distinguishable from it."""
    return 0.5 + 0.1 * c_in * c_out + 0.03 * c_in**2 + 0.2 * c_out


def synthetic_table(scale: int = 2) -> LatencyTable:
    grid = tuple(tuple(surface(i, o) for o in COUNTS) for i in COUNTS)
    return LatencyTable(
        {
            "head": LayerGrid(3, (3,), COUNTS, (tuple(surface(3, o) for o in COUNTS),)),
            "conv1x1": LayerGrid(1, COUNTS, COUNTS, grid),
            "conv3x3": LayerGrid(3, COUNTS, COUNTS, tuple(tuple(2 * v for v in row) for row in grid)),
            "last": LayerGrid(3, COUNTS, (3 * scale**2,), tuple((surface(i, 12),) for i in COUNTS)),
        }
    )


def read(table: LatencyTable, c_in: float, c_out: float, kind: str = "conv1x1") -> float:
    return float(table.interpolate(kind, torch.tensor(float(c_in)), torch.tensor(float(c_out))))


def test_channel_grid_and_lr_size():
    assert channel_grid(32, 8) == (1, 8, 16, 24, 32)
    assert channel_grid(30, 8) == (1, 8, 16, 24, 30)
    assert lr_size(2) == (360, 640)
    assert lr_size(3) == (240, 427)  # ceil: the smallest LR frame whose x3 output covers 720p


def test_exact_at_grid_points():
    table = synthetic_table()
    for c_in in COUNTS:
        for c_out in COUNTS:
            assert read(table, c_in, c_out) == pytest.approx(surface(c_in, c_out), rel=1e-6)
    assert read(table, 3, 4, "head") == pytest.approx(surface(3, 4), rel=1e-6)
    assert read(table, 8, 12, "last") == pytest.approx(surface(8, 12), rel=1e-6)


def test_linear_between_grid_points():
    table = synthetic_table()
    # Along one axis: linear between the two neighbouring counts.
    for t in (0.25, 0.5, 0.75):
        expected = (1 - t) * surface(4, 4) + t * surface(8, 4)
        assert read(table, 4 + 4 * t, 4) == pytest.approx(expected, rel=1e-6)
    # Inside a cell: bilinear in the pair.
    ti, to = 0.25, 0.75
    corners = [surface(4, 1), surface(8, 1), surface(4, 4), surface(8, 4)]
    weights = [(1 - ti) * (1 - to), ti * (1 - to), (1 - ti) * to, ti * to]
    expected = sum(w * c for w, c in zip(weights, corners, strict=True))
    assert read(table, 4 + 4 * ti, 1 + 3 * to) == pytest.approx(expected, rel=1e-6)


def test_count_zero_costs_zero_and_is_linear_down_to_it():
    table = synthetic_table()
    assert read(table, 0, 8) == 0.0
    assert read(table, 8, 0) == 0.0
    assert read(table, 0, 0) == 0.0
    assert read(table, 0, 12, "last") == 0.0
    assert read(table, 3, 0, "head") == 0.0
    assert read(table, 0.5, 8) == pytest.approx(0.5 * surface(1, 8), rel=1e-6)


@pytest.mark.parametrize(("c_in", "c_out"), [(4.0, 4.0), (5.0, 2.0), (1.0, 1.0), (0.0, 6.0), (8.0, 8.0)])
def test_gradients_are_the_slopes_of_the_bilinear_surface(c_in: float, c_out: float):
    table = synthetic_table()
    alive_in = torch.tensor(c_in, requires_grad=True)
    alive_out = torch.tensor(c_out, requires_grad=True)
    table.interpolate("conv1x1", alive_in, alive_out).backward()
    # One-sided differences in the direction the segment choice uses: to the right of a grid point,
    # to the left at the widest count (the last segment).
    h_in = -1e-3 if c_in == COUNTS[-1] else 1e-3
    h_out = -1e-3 if c_out == COUNTS[-1] else 1e-3
    slope_in = (read(table, c_in + h_in, c_out) - read(table, c_in, c_out)) / h_in
    slope_out = (read(table, c_in, c_out + h_out) - read(table, c_in, c_out)) / h_out
    assert float(alive_in.grad) == pytest.approx(slope_in, rel=1e-2, abs=1e-3)
    assert float(alive_out.grad) == pytest.approx(slope_out, rel=1e-2, abs=1e-3)


def test_estimate_sums_the_convs_of_a_supernet_and_gradients_reach_the_gates():
    cfg = SupernetConfig(num_blocks=2, width=8)
    supernet = Supernet(cfg, scale=2)
    table = synthetic_table()
    convs = supernet.counted_convs()
    expected = sum(read(table, float(c.alive_in.detach()), float(c.alive_out.detach()), conv_kind(c)) for c in convs)
    estimate = table.estimate_ms(convs)
    assert estimate.dim() == 0
    assert float(estimate.detach()) == pytest.approx(expected, rel=1e-5)
    estimate.backward()
    gates = supernet.gate_parameters()
    assert all(p.grad is not None for p in gates)
    assert all(float(p.grad.abs().sum()) > 0 for p in gates)
    assert float(table.with_overhead(7.5).estimate_ms(supernet.counted_convs()).detach()) == pytest.approx(
        expected + 7.5
    )


def test_counts_outside_the_table_raise():
    table = synthetic_table()
    with pytest.raises(ValueError, match=r"counts in \[0, 8\]"):
        read(table, 9, 4)
    with pytest.raises(ValueError, match="fixed count 12"):
        read(table, 4, 27, "last")  # a table of another scale
    with pytest.raises(KeyError, match="conv5x5"):
        table.interpolate("conv5x5", torch.tensor(1.0), torch.tensor(1.0))


def test_json_round_trip():
    table = synthetic_table().with_overhead(3.0)
    again = LatencyTable.from_dict(json.loads(json.dumps(table.as_dict())))
    assert again.grids == table.grids
    assert again.overhead_ms == 3.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_estimate_on_cuda_counts():
    table = synthetic_table()
    convs = [CountedConv("block0.mult", 3, torch.tensor(5.0, device="cuda"), torch.tensor(2.0, device="cuda"))]
    estimate = table.estimate_ms(convs)
    assert estimate.device.type == "cuda"
    assert float(estimate) == pytest.approx(read(table, 5, 2, "conv3x3"), rel=1e-6)


# ---- building: runtimes, cache ------------------------------------------------------------------------------------

TINY = SupernetConfig(num_blocks=1, width=8)
TINY_BUILD = dict(output_hw=(16, 16), step=4, rounds=1, repeats=1, warmup=0, progress=False)  # LR 8x8 at x2


def fake_measure(kernel: int, c_in: int, c_out: int, lr_hw: tuple[int, int], **_: object) -> float:
    return kernel * 0.01 * c_in * c_out + 0.1


def test_bad_runtime_names_the_allowed_values(tmp_path):
    with pytest.raises(ValueError, match=r"runtime must be one of \['openvino', 'onnxruntime'\], got 'tensorrt'"):
        build_latency_table(TINY, 2, runtime="tensorrt", cache_dir=tmp_path, **TINY_BUILD)
    with pytest.raises(ValueError, match="precision must be one of"):
        build_latency_table(TINY, 2, precision="int4", cache_dir=tmp_path, **TINY_BUILD)


def test_cache_hit_returns_the_same_table_without_measuring(tmp_path, monkeypatch):
    monkeypatch.setattr(latency_table, "measure_conv_ms", fake_measure)
    first = build_latency_table(TINY, 2, cache_dir=tmp_path, **TINY_BUILD)
    files = list(tmp_path.glob("openvino-*.json"))
    assert len(files) == 1

    def must_not_measure(*args: object, **kwargs: object) -> float:
        raise AssertionError("a cached table was measured again")

    monkeypatch.setattr(latency_table, "measure_conv_ms", must_not_measure)
    second = build_latency_table(TINY, 2, cache_dir=tmp_path, **TINY_BUILD)
    assert second.grids == first.grids
    assert second.meta["from_cache"] == str(files[0])
    # Another key (threads) is another file, so it is measured.
    with pytest.raises(AssertionError, match="measured again"):
        build_latency_table(TINY, 2, cache_dir=tmp_path, threads=1, **TINY_BUILD)


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(latency_cache.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(latency_table, "measure_conv_ms", fake_measure)
    build_latency_table(TINY, 2, **TINY_BUILD)
    assert len(list((tmp_path / "latency").glob("openvino-*.json"))) == 1


def test_corrupt_cache_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setattr(latency_table, "measure_conv_ms", fake_measure)
    first = build_latency_table(TINY, 2, cache_dir=tmp_path, **TINY_BUILD)
    (path,) = tmp_path.glob("openvino-*.json")
    path.write_text('{"format": 1, "grids": {"head": ', encoding="utf-8")
    with pytest.warns(UserWarning, match="unusable .* measuring it again"):
        again = build_latency_table(TINY, 2, cache_dir=tmp_path, **TINY_BUILD)
    assert again.grids == first.grids
    assert LatencyTable.load(path).grids == first.grids  # the file was repaired


def test_grid_values_and_kinds_of_a_build(tmp_path, monkeypatch):
    monkeypatch.setattr(latency_table, "measure_conv_ms", fake_measure)
    table = build_latency_table(TINY, 3, cache_dir=tmp_path, **TINY_BUILD)
    assert set(table.grids) == {"head", "conv1x1", "conv3x3", "last"}
    assert table.grids["conv3x3"].in_counts == (1, 4, 8)
    assert table.grids["head"].in_counts == (3,)
    assert table.grids["last"].out_counts == (27,)
    assert table.grids["conv1x1"].ms[2][1] == pytest.approx(fake_measure(1, 8, 4, (8, 8)))
    without_pointwise = SupernetConfig(num_blocks=1, width=8, pointwise=False)
    assert "conv1x1" not in build_latency_table(without_pointwise, 3, cache_dir=tmp_path, **TINY_BUILD).grids


def test_real_openvino_measurement_is_positive_and_finite(tmp_path):
    table = build_latency_table(TINY, 2, cache_dir=tmp_path, **TINY_BUILD)
    values = [v for grid in table.grids.values() for row in grid.ms for v in row]
    assert len(values) == 3 + 9 + 9 + 3
    assert all(0 < v < float("inf") for v in values)
    supernet = Supernet(TINY, scale=2)
    assert float(table.estimate_ms(supernet.counted_convs()).detach()) > 0
