"""count_complexity reproduces paper 001 Table 2 and hand-counted Mult-Adds; measure_latency's contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgesr.complexity import Complexity, count_complexity
from edgesr.latency import LatencyResult, measure_latency
from edgesr.models import MODEL_NAMES, build_model, default_model_config
from tests.reference_archs import SRCNN, VDSR, EDSRBaseline


@pytest.mark.parametrize(
    ("model", "params_k", "mult_adds_g"),
    [
        pytest.param(SRCNN(upscale=2), 57, 52.7, id="SRCNN"),
        pytest.param(VDSR(upscale=2), 665, 612.6, id="VDSR"),
        pytest.param(EDSRBaseline(), 1370, 315.1, id="EDSR-baseline"),
    ],
)
def test_reproduces_fgnas_table2_x2(model: nn.Module, params_k: float, mult_adds_g: float) -> None:
    # Given a published x2 baseline, when counted at a 1280x720 output (paper 001 Table 2 convention)
    result = count_complexity(model, scale=2)
    print(f"{type(model).__name__}: {result.params:,} params, {result.mult_adds / 1e9:.2f} G Mult-Adds")
    # Then params and Mult-Adds are within 1% of the table
    assert result.params / 1e3 == pytest.approx(params_k, rel=0.01)
    assert result.mult_adds / 1e9 == pytest.approx(mult_adds_g, rel=0.01)


class _TinyNet(nn.Module):
    """Every MAC kind once, on a (1, 2, 8, 8) input."""

    num_in_ch = 2

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.grouped = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)
        self.fc = nn.Linear(2 * 16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.up(self.depthwise(self.grouped(self.conv(x))))
        return self.fc(x.flatten(1))


def test_hand_counted_mult_adds_of_every_layer_kind() -> None:
    # Given convs (plain, grouped, depthwise), a transposed conv and a linear layer on an 8x8 LR input
    net = _TinyNet()
    # When counted for a 16x16 output at x2
    result = count_complexity(net, scale=2, output_hw=(16, 16))
    # Then MACs are the hand sums:
    conv = 4 * 8 * 8 * 2 * 3 * 3  # Cout Hout Wout (Cin/g) kh kw = 4,608
    grouped = 4 * 8 * 8 * (4 // 2) * 3 * 3  # 4,608
    depthwise = 4 * 8 * 8 * 1 * 3 * 3  # 2,304
    transposed = 4 * 8 * 8 * 2 * 2 * 2  # Cin Hin Win (Cout/g) kh kw = 2,048
    linear = 512 * 10  # 5,120
    assert result.mult_adds == conv + grouped + depthwise + transposed + linear == 18_688
    # and every bias is one add per output element
    assert result.other_ops == 3 * 4 * 8 * 8 + 2 * 16 * 16 + 10
    assert result.params == sum(p.numel() for p in net.parameters())


def test_other_ops_counts_relu_per_element_and_pixel_shuffle_free() -> None:
    # Given a bias-free 1x1 conv, an in-place ReLU and a PixelShuffle on a (1, 3, 10, 12) input
    net = nn.Sequential(nn.Conv2d(3, 8, 1, bias=False), nn.ReLU(inplace=True), nn.PixelShuffle(2))
    # When counted for the 20x24 output at x2
    result = count_complexity(net, scale=2, output_hw=(20, 24))
    # Then the ReLU costs H W C, the conv H W Cout Cin, the shuffle nothing
    assert result.other_ops == 10 * 12 * 8
    assert result.mult_adds == 10 * 12 * 8 * 3
    assert result.as_dict() == {"params": 24, "mult_adds": 2_880, "other_ops": 960}


def test_counting_leaves_the_model_untouched() -> None:
    model = build_model(default_model_config("xlsr"), 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_complexity(model, scale=2)
    assert all(t.device.type == "cpu" for t in model.state_dict().values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_xlsr_x2_mult_adds_by_hand() -> None:
    # Per LR pixel: side 3*16*9 + stem 3*32*9 + 32*32 + 3 GBlocks (32*8*9 + 32*32) + 48*32 + 32*12*9
    per_pixel = 432 + 864 + 1024 + 3 * (2304 + 1024) + 1536 + 3456
    result = count_complexity(build_model(default_model_config("xlsr"), 2), scale=2)
    assert result.mult_adds == per_pixel * 360 * 640 == 3_984_998_400
    assert result.params == 17_612


def test_zoo_complexity_table(capsys: pytest.CaptureFixture[str]) -> None:
    # Given every zoo model at x2, x3, x4: print the table (see the test log); bicubic has no weights
    rows = {}
    for name in MODEL_NAMES:
        for scale in (2, 3, 4):
            rows[name, scale] = count_complexity(build_model(default_model_config(name), scale), scale)
    with capsys.disabled():
        print("\nmodel          scale   params    Mult-Adds@720p   other ops")
        for (name, scale), c in rows.items():
            mult_adds, other = c.mult_adds / 1e9, c.other_ops / 1e9
            print(f"{name:14s} x{scale}  {c.params:9,d}  {mult_adds:10.3f} G  {other:8.3f} G")
    assert all(isinstance(c, Complexity) for c in rows.values())
    assert rows["bicubic", 2].params == 0 and rows["bicubic", 2].mult_adds > 0


def test_measure_latency_restores_threads_and_mode() -> None:
    # Given a model in train mode and the current thread count
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    model.train()
    threads_before = torch.get_num_threads()
    # When measured with one thread
    result = measure_latency(model, (8, 8), repeats=3, warmup=1, threads=1)
    # Then the summary describes 3 runs on 1 thread, and the thread count and train mode are restored
    assert isinstance(result, LatencyResult)
    assert result.repeats == 3 and result.threads == 1 and result.input_hw == (8, 8)
    assert 0 < result.min_ms <= result.median_ms and result.min_ms <= result.mean_ms
    assert set(result.as_dict()) == {"median_ms", "mean_ms", "min_ms", "repeats", "threads", "input_hw"}
    assert torch.get_num_threads() == threads_before
    assert model.training


def test_measure_latency_rejects_bad_arguments() -> None:
    model = nn.Identity()
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(model, (4, 4), repeats=0)
    with pytest.raises(ValueError, match="threads"):
        measure_latency(model, (4, 4), threads=0)
