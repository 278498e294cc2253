"""int8 PTQ with both runtimes on a model built to break int8: full int8, ignored layers, accuracy control.

The model is the failure paper 003 Sec. 3.2 describes: an outlier channel (constant 500) concatenated
with the image channels shares their int8 range, so the image is quantized to zero. Its fp32 output is
nearest-neighbour upsampling, about 36 dB PSNR-Y on the test image.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import pytest
import torch
from skimage import data
from torch import nn

from edgesr.data.imresize import imresize
from edgesr.data.stress import stress_images
from edgesr.deploy.export import export_onnx, export_openvino, module_paths
from edgesr.deploy.runtimes import onnxruntime_runner, openvino_runner, upscale_image
from edgesr.deploy.tiling import upscale_tiled
from edgesr.metrics import psnr_y
from edgesr.models.bicubic import Bicubic, BicubicPhases
from edgesr.quant.calibration import calibration_patches
from edgesr.quant.checks import output_errors
from edgesr.quant.exact_skip import dense_weights, grid_taps, int8_exact_weights
from edgesr.quant.layers import (
    float_module_nodes,
    ignored_nodes,
    module_nodes,
    openvino_ignored_scope,
    openvino_skip_nodes,
)
from edgesr.quant.onnxruntime_ptq import quantize_onnxruntime
from edgesr.quant.openvino_ptq import quantize_openvino, quantize_openvino_with_accuracy_control
from edgesr.quant.precision import onnxruntime_precisions, openvino_precisions
from edgesr.quant.qat import DISTILL_METRIC, DistillationObjective, float_scope, quantize_openvino_qat
from edgesr.quant.settings import Int8Limits, QatConfig, QuantizeConfig
from edgesr.quant.verify import verify_int8
from tests.ddp_worker import Interrupted

SCALE = 2


def _nearest_neighbour(conv_up: nn.Conv2d) -> None:
    """Set a 1x1 conv to 3 s^2 channels to copy each of the first three input channels to its s^2 sub-pixels:
    before a PixelShuffle, nearest-neighbour upsampling (the other input channels are read with zero weight)."""
    conv_up.weight.zero_()
    for channel in range(3):
        conv_up.weight[channel * SCALE**2 : (channel + 1) * SCALE**2, channel] = 1.0
    conv_up.bias.zero_()


class OutlierNet(nn.Module):
    """x -> cat[identity 1x1 conv (3 ch), constant-500 1x1 conv (1 ch)] -> 1x1 conv to 12 -> PixelShuffle(2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_image = nn.Conv2d(3, 3, 1)
        self.conv_outlier = nn.Conv2d(3, 1, 1)
        self.conv_up = nn.Conv2d(4, 3 * SCALE**2, 1)
        self.shuffle = nn.PixelShuffle(SCALE)
        with torch.no_grad():
            self.conv_image.weight.copy_(torch.eye(3)[:, :, None, None])
            self.conv_image.bias.zero_()
            self.conv_outlier.weight.zero_()
            self.conv_outlier.bias.fill_(500.0)
            _nearest_neighbour(self.conv_up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv_up(torch.cat([self.conv_image(x), self.conv_outlier(x)], dim=1)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("quant")
    onnx_path = export_onnx(OutlierNet().eval(), root / "model.onnx")
    hr = data.astronaut()[100:164, 100:164]
    rng = np.random.default_rng(0)
    return {
        "root": root,
        "onnx": onnx_path,
        "ir": export_openvino(onnx_path, root)["fp32"],
        "proto": onnx.load(onnx_path),
        "val": [("astronaut", imresize(hr, 1 / SCALE), hr)],
        "calibration": [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(16)],
    }


def _psnr(runner, val) -> float:
    _, lr, hr = val[0]
    return psnr_y(upscale_image(runner, lr), hr, SCALE)


def test_full_int8_quantizes_every_layer_and_loses_the_image(exported):
    root, val, calibration = exported["root"], exported["val"], exported["calibration"]
    fp32 = _psnr(openvino_runner(exported["ir"], 2), val)
    assert fp32 == pytest.approx(_psnr(onnxruntime_runner(exported["onnx"], 2), val), abs=1e-6)
    assert fp32 > 30
    modules = module_paths(exported["proto"])

    ov_int8 = quantize_openvino(exported["ir"], calibration, root / "full" / "openvino.xml")
    assert fp32 - _psnr(openvino_runner(ov_int8, 2), val) > 20
    # OpenVINO runs all three convolutions in int8, first and last included
    assert openvino_precisions(ov_int8, modules).int8["Convolution"] == 3

    ort_int8 = quantize_onnxruntime(exported["onnx"], calibration, root / "full" / "model.onnx")
    assert fp32 - _psnr(onnxruntime_runner(ort_int8, 2), val) > 20
    executed = onnxruntime_precisions(ort_int8, modules)
    # ONNX Runtime fuses the concatenation and the last conv into integer kernels; it keeps the two convs
    # on the model input, and DepthToSpace, in float between quantize / dequantize pairs (reported)
    assert executed.int8 == {"QLinearConcat": 1, "QLinearConv": 1}
    assert "conv_up" not in " ".join(executed.float_layers) and "shuffle (DepthToSpace)" in executed.float_layers


def test_ignored_layers_stay_in_float_and_restore_the_psnr(exported):
    root, val, calibration = exported["root"], exported["val"], exported["calibration"]
    fp32 = _psnr(openvino_runner(exported["ir"], 2), val)
    # module paths and functional-op node names (the concatenation) both name layers
    nodes = ignored_nodes(exported["proto"], ["conv_up", "node_cat"], "outlier_net")
    assert set(nodes) == {"node_cat", *(n for n, m in module_paths(exported["proto"]).items() if m == "conv_up")}

    ov_int8 = quantize_openvino(
        exported["ir"], calibration, root / "ignored" / "openvino.xml", openvino_ignored_scope(nodes)
    )
    executed = openvino_precisions(ov_int8, module_paths(exported["proto"]))
    assert executed.int8["Convolution"] == 2 and "conv_up (Convolution)" in executed.float_layers
    assert fp32 - _psnr(openvino_runner(ov_int8, 2), val) < 0.6

    ort_int8 = quantize_onnxruntime(exported["onnx"], calibration, root / "ignored" / "model.onnx", nodes)
    assert fp32 - _psnr(onnxruntime_runner(ort_int8, 2), val) < 0.6


def test_an_unknown_layer_name_lists_the_layers_that_exist(exported):
    with pytest.raises(ValueError, match=r"quantize.ignored_layers.net: no layer 'conv_lst'.*conv_image, conv_outlier"):
        ignored_nodes(exported["proto"], ["conv_up", "conv_lst"], "net")


def test_accuracy_control_returns_layers_to_float_until_the_drop_fits(exported):
    root, val, calibration = exported["root"], exported["val"], exported["calibration"]
    fp32 = _psnr(openvino_runner(exported["ir"], 2), val)
    out = quantize_openvino_with_accuracy_control(
        exported["ir"], calibration, val, SCALE, max_drop=0.6, out_xml=root / "ac" / "openvino.xml"
    )
    assert fp32 - _psnr(openvino_runner(out, 2), val) <= 0.6
    # the layer that reads the outlier went back to float; the others stayed int8
    executed = openvino_precisions(out, module_paths(exported["proto"]))
    assert "conv_up (Convolution)" in executed.float_layers and executed.int8["Convolution"] == 2


def test_calibration_patches_are_seeded_training_crops():
    hr = data.astronaut()[:96, :96]
    pairs = [("a", imresize(hr, 1 / SCALE), hr)]
    first = calibration_patches(pairs, SCALE, 5, 16, seed=3)
    assert len(first) == 5 and first[0].shape == (1, 3, 16, 16) and first[0].dtype == np.float32
    again = calibration_patches(pairs, SCALE, 5, 16, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert 0.0 <= min(p.min() for p in first) and max(p.max() for p in first) <= 1.0


def _small_residual_body(seed: int) -> nn.Sequential:
    """conv 3 -> 8, ReLU, conv 8 -> 3 s^2 whose output is small, as a trained SR network's residual; its weights
    drawn from ``seed`` (the flat-level bounds below hold for these networks, not for every random one)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3 * SCALE**2, 3, padding=1))
    with torch.no_grad():
        body[2].weight.mul_(0.1)
        body[2].bias.zero_()
    return body


class SkipNet(nn.Module):
    """A small residual network plus the fixed bicubic skip (FGNAS, SAM_SR): x -> PixelShuffle(body(x)) + bicubic(x)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.num_in_ch = 3
        self.body = _small_residual_body(seed)
        self.shuffle = nn.PixelShuffle(SCALE)
        self.bicubic = Bicubic(3, SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x)) + self.bicubic(x)


def _flat_skip_errors(
    net: nn.Module,
    folder: Path,
    float_nodes: Callable[[onnx.ModelProto], list[str]],
    exact_convs: Callable[[onnx.ModelProto], list[str]] = lambda proto: [],
) -> list[float]:
    """Mean |int8 - fp32| (levels) of ``net`` on seven flat images, quantized by NNCF with ``float_nodes`` of its
    ONNX graph kept in float and ``exact_convs`` made int8-exact skips, calibrated on a photo's crops and
    synthetic patches."""
    torch.manual_seed(0)
    onnx_path = export_onnx(net.eval(), folder / "model.onnx")
    ir = export_openvino(onnx_path, folder)["fp32"]
    hr = data.astronaut()[:256, :256]
    calibration = calibration_patches([("a", imresize(hr, 1 / SCALE), hr)], SCALE, 64, 16, seed=0)
    proto = onnx.load(onnx_path)
    scope = openvino_ignored_scope(float_nodes(proto))
    int8 = quantize_openvino(ir, calibration, folder / "int8" / "openvino.xml", scope, exact_convs(proto))
    fp32_runner, int8_runner = openvino_runner(ir, 2), openvino_runner(int8, 2)
    flats = [np.full((24, 24, 3), level, np.uint8) for level in (0, 16, 64, 128, 192, 235, 255)]
    return [
        output_errors(upscale_tiled(int8_runner, f, SCALE, 64, 4), upscale_tiled(fp32_runner, f, SCALE, 64, 4), 0)[
            "mean_abs"
        ]
        for f in flats
    ]


def test_the_bicubic_skip_in_float_keeps_flat_levels(tmp_path):
    # Given a network with the bicubic skip
    proto = onnx.load(export_onnx(SkipNet().eval(), tmp_path / "model.onnx"))
    skip = module_nodes(proto, "bicubic")
    ops = {node.name: node.op_type for node in proto.graph.node}
    assert sorted(ops[node] for node in skip if ops[node] in {"Conv", "DepthToSpace"}) == [
        "Conv",
        "Conv",
        "DepthToSpace",
    ]
    # quantize.float_modules keeps the module and the Add that sums it into the output
    floats = float_module_nodes(proto, ["bicubic"])
    assert floats[: len(skip)] == skip and [ops[node] for node in floats[len(skip) :]] == ["Add"]
    # When the skip is int8 too, its 5-tap filters' rounding and two requantizations move flat levels by ~2
    assert max(_flat_skip_errors(SkipNet(), tmp_path / "int8_skip", lambda proto: [])) > 1.5
    # with the skip in float (quantize.float_modules), every flat level stays within one level
    float_skip = partial(float_module_nodes, modules=["bicubic"])
    assert max(_flat_skip_errors(SkipNet(), tmp_path / "float_skip", float_skip)) <= 1.0


class PhaseSkipNet(nn.Module):
    """The FGNAS deploy form's tail: a conv's phases plus the bicubic skip's phases, then one pixel shuffle."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.num_in_ch = 3
        self.body = _small_residual_body(seed)
        self.bicubic = BicubicPhases(3, SCALE)
        self.shuffle = nn.PixelShuffle(SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.body(x) + self.bicubic(x))


def test_the_add_of_a_float_skip_stays_float(tmp_path):
    """Issue 13: an int8 conv's output plus the float skip's, as the FGNAS deploy form adds them. With only the
    skip's nodes in float, NNCF quantizes both inputs of the Add, rounding the skip to 8 bits after all."""
    rounded = _flat_skip_errors(PhaseSkipNet(), tmp_path / "int8_add", partial(module_nodes, module="bicubic"))
    kept = _flat_skip_errors(PhaseSkipNet(), tmp_path / "float_add", partial(float_module_nodes, modules=["bicubic"]))
    assert max(rounded) > 0.5 and max(kept) <= 1.0
    assert sum(kept) < sum(rounded) / 2


def _int8_conv_taps(xml: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weights, per-channel scale) of the conv ``name`` in an NNCF int8 IR (weights * scale = its taps)."""
    ops = {op.get_friendly_name(): op for op in ov.Core().read_model(xml).get_ordered_ops()}
    dequantize = ops[name].input_value(1).get_node()  # Multiply(Convert(int8 constant), scale)
    ints = dequantize.input_value(0).get_node().input_value(0).get_node().get_data()
    return ints, dequantize.input_value(1).get_node().get_data().reshape(-1)


def test_an_int8_exact_skip_runs_in_int8_on_its_grid_taps_and_keeps_flat_levels(tmp_path):
    """Issue 13: OpenVINO runs the deploy form's one-conv bicubic skip in int8. NNCF gives a conv that reads the
    model input 7-bit weights (scale = max|w| / 63.5, integers clamped to [-64, 63]); written as k / K with the
    largest tap at 63.5 / K, the int8 taps are exactly the grid taps k, so every phase sums to 1 and flat
    images keep their level as with the skip in float; only the skip's Add is left in float."""
    proto = onnx.load(export_onnx(PhaseSkipNet().eval(), tmp_path / "model.onnx"))
    floats, exact = openvino_skip_nodes(proto, ["bicubic"])
    ops = {node.name: node.op_type for node in proto.graph.node}
    assert [ops[node] for node in floats] == ["Add"] and [ops[node] for node in exact] == ["Conv"]

    net = PhaseSkipNet(seed=1)
    errors = _flat_skip_errors(net, tmp_path / "exact", lambda p: floats, lambda p: exact)
    # the same flat errors as with the skip in float: what is left comes from the int8 body conv
    assert errors == _flat_skip_errors(net, tmp_path / "float", partial(float_module_nodes, modules=["bicubic"]))
    assert max(errors) < 0.1
    ints, scale = _int8_conv_taps(tmp_path / "exact" / "int8" / "openvino.xml", exact[0])
    dense = dense_weights(BicubicPhases(3, SCALE).weight.numpy().reshape(3, SCALE**2, 1, 5, 5))
    for channel in range(dense.shape[0]):
        grid, total = grid_taps(dense[channel])
        np.testing.assert_array_equal(ints[channel], grid)
        assert scale[channel] * total == pytest.approx(1.0, abs=1e-6)
        assert np.abs(grid / total - dense[channel]).max() <= 1 / total
    report = openvino_precisions(tmp_path / "exact" / "int8" / "openvino.xml", module_paths(proto))
    assert not [layer for layer in report.as_dict()["float_layers"] if "Convolution" in layer]
    # the skip's exact bicubic taps quantized by NNCF as they are: rounded to its 7-bit grid, flats move
    plain = _flat_skip_errors(net, tmp_path / "plain", lambda p: floats)
    assert sum(plain) > sum(errors) + 0.2


def test_grid_taps_keep_an_interpolation_kernel_and_refuse_a_learned_one():
    phases = BicubicPhases(3, 3).weight.numpy()[:, 0]  # x3: one phase is the identity
    for kernel in phases:
        grid, total = grid_taps(kernel)
        assert grid.sum() == total and np.abs(grid).max() == 63 and np.all(grid[kernel == 0] == 0)
    written = int8_exact_weights(phases[:, None])  # the largest tap at 63.5 / K, the others k / K
    totals = (63 / phases.max(axis=(1, 2))).round()
    np.testing.assert_allclose(written.reshape(len(phases), -1).max(axis=1), 63.5 / totals, rtol=1e-6)
    with pytest.raises(ValueError, match="summing to 1.*quantize.float_modules"):
        int8_exact_weights(np.full((2, 1, 3, 3), 0.2, np.float32))


def test_calibration_without_saturated_content_is_caught_and_the_fix_passes(tmp_path):
    """Issue 9's defect on a small model: calibrated on mid-tone crops only (the old calibration), flat white and
    bright images clip in int8 and the checks say so; the domain-covering calibration with the skip in float passes."""
    onnx_path = export_onnx(SkipNet().eval(), tmp_path / "model.onnx")
    ir = export_openvino(onnx_path, tmp_path)["fp32"]
    hr = (data.astronaut()[100:260, 100:260] * 0.75).astype(np.uint8)  # a photo without highlights
    pairs = [("a", imresize(hr, 1 / SCALE), hr)]
    stress = [image for image in stress_images() if image.kind in {"flat", "bright"}]
    upscale = partial(upscale_tiled, scale=SCALE, tile=64, overlap=4)
    limits = Int8Limits()

    def failures(calibration: list[np.ndarray], ignored: list[str], folder: str) -> list[str]:
        int8 = quantize_openvino(ir, calibration, tmp_path / folder / "openvino.xml", openvino_ignored_scope(ignored))
        return verify_int8(openvino_runner(ir, 2), openvino_runner(int8, 2), {}, stress, SCALE, upscale, limits)[
            "failures"
        ]

    crops = calibration_patches(pairs, SCALE, 64, 16, seed=0, exposed_fraction=0, synthetic_fraction=0)
    assert max(p.max() for p in crops) < 0.95  # no white in the photo's crops
    before = failures(crops, [], "before")
    assert any("flat_grey_255" in f for f in before) and any("bright_" in f for f in before)
    after = failures(
        calibration_patches(pairs, SCALE, 64, 16, seed=0), module_nodes(onnx.load(onnx_path), "bicubic"), "after"
    )
    assert after == []


class TwoConvNet(nn.Module):
    """3 -> 8 (3x3, ReLU) -> 3 (3x3): random weights whose int8 rounding shifts the output means."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_bias_correction_matches_every_conv_output_mean_to_fp32_within_half_a_bias_step(tmp_path):
    """Nagel et al. 2019 Sec. 4.2: after correction, E[y_c] of int8 equals fp32's up to the int32 bias rounding."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgesr.quant.bias_correction import _channel_means, correct_biases
    from edgesr.quant.onnxruntime_ptq import _Patches
    from edgesr.quant.overflow import resolve_overflow_fix

    fp32_path = tmp_path / "prepared.onnx"  # as quantize_onnxruntime prepares it (the exporter's functions inlined)
    quant_pre_process(str(export_onnx(TwoConvNet().eval(), tmp_path / "model.onnx")), str(fp32_path))
    rng = np.random.default_rng(1)
    patches = [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(24)]
    plain = tmp_path / "plain.onnx"
    quantize_static(str(fp32_path), str(plain), _Patches(patches), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    reduce_range=resolve_overflow_fix() == "all_layers")  # fmt: skip
    fp32, int8 = onnx.load(fp32_path), onnx.load(plain)
    corrected = correct_biases(fp32, int8, patches)
    # the quantizer renames conv outputs (Conv + Relu fused, the graph output): pair the convs by node name
    reference_of = {node.name: node.output[0] for node in fp32.graph.node if node.op_type == "Conv"}
    convs = [node for node in corrected.graph.node if node.op_type == "Conv"]
    assert [conv.name for conv in convs] == list(reference_of)
    reference = _channel_means(fp32, list(reference_of.values()), patches)
    names = [conv.output[0] for conv in convs]
    before, after = _channel_means(int8, names, patches), _channel_means(corrected, names, patches)
    initializers = {init.name: onnx.numpy_helper.to_array(init) for init in corrected.graph.initializer}
    worst_before = 0.0
    for conv in convs:
        scale, target = initializers[f"{conv.input[2]}_quantized_scale"], reference[reference_of[conv.name]]
        assert np.all(np.abs(after[conv.output[0]] - target) <= 0.5 * scale + 1e-6), conv.name
        worst_before = max(worst_before, float(np.max(np.abs(before[conv.output[0]] - target) / scale)))
    assert worst_before > 1.0  # the uncorrected model was off by more than one bias step somewhere


class PictureNet(nn.Module):
    """ESPCN's output end: a 3x3 conv to 3 s^2 channels whose output is the picture, then PixelShuffle."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3 * SCALE**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


def test_the_picture_before_depth_to_space_is_quantized_on_the_8_bit_image_grid(tmp_path):
    """The conv output that DepthToSpace only rearranges gets scale 1/255 and zero point -128 (issue 9),
    so every int8 output value in [0, 1] is exactly an 8-bit level."""
    from edgesr.quant.onnxruntime_ptq import image_grid_overrides

    fp32 = export_onnx(PictureNet().eval(), tmp_path / "model.onnx")
    overrides = image_grid_overrides(onnx.load(fp32))
    (tensor,) = overrides  # the one conv output in front of DepthToSpace
    rng = np.random.default_rng(0)
    patches = [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(8)]
    int8 = onnx.load(quantize_onnxruntime(fp32, patches, tmp_path / "int8.onnx"))
    constants = {init.name: onnx.numpy_helper.to_array(init) for init in int8.graph.initializer}
    (quantize,) = [n for n in int8.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor]
    assert constants[quantize.input[1]] == pytest.approx(1 / 255)
    assert int(constants[quantize.input[2]]) == -128
    output = onnxruntime_runner(tmp_path / "int8.onnx", 1)(patches[0])
    inside = output[(output >= 0) & (output <= 1)]
    assert inside.size > 0.5 * output.size
    np.testing.assert_allclose(inside * 255, np.round(inside * 255), atol=1e-3)


def test_symmetric_activations_put_every_activation_zero_point_at_zero(exported, tmp_path):
    """quantize.onnxruntime_symmetric: ranges [-max|x|, max|x|] (zero point 0) instead of [min, max]; the
    picture in front of DepthToSpace keeps the image grid either way."""
    from edgesr.quant.onnxruntime_ptq import image_grid_overrides

    picture = set(image_grid_overrides(exported["proto"]))

    def activation_zero_points(path) -> list[int]:
        model = onnx.load(path)
        constants = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
        return [
            int(constants[node.input[2]])
            for node in model.graph.node
            if node.op_type == "QuantizeLinear" and node.input[0] not in constants and node.input[0] not in picture
        ]

    patches = exported["calibration"]
    symmetric = quantize_onnxruntime(exported["onnx"], patches, tmp_path / "s.onnx", symmetric_activations=True)
    asymmetric = quantize_onnxruntime(exported["onnx"], patches, tmp_path / "a.onnx")
    assert set(activation_zero_points(symmetric)) == {0}
    assert any(zero != 0 for zero in activation_zero_points(asymmetric))  # the [0, 1] image input: -128


def _torch_runner(model: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return run


class StretchedRangeNet(nn.Module):
    """x -> ReLU(1x1 conv: the image and ``gain`` x its red channel) -> 1x1 conv reading the image channels only,
    to 12 -> PixelShuffle(2): nearest-neighbour upsampling, with an unread channel that stretches the range."""

    def __init__(self, gain: float) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, 4, 1)
        self.conv_up = nn.Conv2d(4, 3 * SCALE**2, 1)
        self.shuffle = nn.PixelShuffle(SCALE)
        with torch.no_grad():
            self.conv_in.weight.zero_()
            self.conv_in.weight[:3, :, 0, 0] = torch.eye(3)
            self.conv_in.weight[3, 0] = gain
            self.conv_in.bias.zero_()
            _nearest_neighbour(self.conv_up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv_up(torch.relu(self.conv_in(x))))


def test_qat_learns_back_the_range_min_max_stretched_over_an_unread_channel(tmp_path):
    """A channel of 150 x red, read with zero weight, stretches the int8 range of conv_up's input to 150, so PTQ
    keeps the image channels to a few levels; QAT's learned range shrinks back to the image."""
    model = StretchedRangeNet(gain=150.0).eval()
    hr = data.astronaut()[100:196, 100:196]
    pairs = [("astronaut", imresize(hr, 1 / SCALE), hr)]
    calibration = calibration_patches(pairs, SCALE, 16, 16, seed=0)
    ptq_cfg = QatConfig(iterations=0, batch=4, patch=16, distill_batch=4)
    qat_cfg = ptq_cfg.model_copy(update={"iterations": 200, "range_lr": 4.0, "val_every": 20})
    # 8-bit weights on every CPU (first_layer): the measured values below; with 7-bit ones everywhere (all_layers, the
    # choice on a CPU without VNNI) QAT reached 27.3 dB on an AMD EPYC
    fix = "first_layer"
    ptq = quantize_openvino_qat(model, calibration, pairs, pairs, SCALE, ptq_cfg, tmp_path / "ptq.xml", tmp_path / "p",
                                overflow_fix=fix)  # fmt: skip
    assert ptq.history == [] and not (tmp_path / "p").exists()  # iterations 0: NNCF's PTQ alone, no run
    run = tmp_path / "run"
    qat_result = quantize_openvino_qat(model, calibration, pairs, pairs, SCALE, qat_cfg, tmp_path / "qat.xml", run,
                                       overflow_fix=fix)  # fmt: skip
    ptq, qat = ptq.xml, qat_result.xml
    fp32 = _psnr(_torch_runner(model), pairs)
    ptq_psnr, qat_psnr = _psnr(openvino_runner(ptq, 2), pairs), _psnr(openvino_runner(qat, 2), pairs)
    assert fp32 - ptq_psnr > 10  # measured: 29.1 dB fp32, 17.5 PTQ
    # after 200 steps: 28.0 dB on an Intel Xeon with AMX, 27.3 on an AMD EPYC Zen 4 (400 steps there: 28.1). At range_lr
    # 4.0 the validations after step 40 swing between 26.7 and 28.5 dB (Zen 4), so where step 200 lands is the
    # machine's rounding: the bound is what QAT must win back of PTQ's 11.6 dB loss, at least 9.1 of it
    assert fp32 - qat_psnr < 2.5
    assert model.conv_in.weight[3, 0, 0, 0].item() == 150.0  # the fp32 model is left as it was
    # an int8 IR with the exported models' input name and dynamic height and width
    assert ov.Core().read_model(qat).inputs[0].get_any_name() == "lr"
    assert openvino_runner(qat, 2)(np.zeros((1, 3, 10, 14), np.float32)).shape == (1, 3, 20, 28)
    assert openvino_precisions(qat, {}).int8["Convolution"] == 2
    # the trainer's run: its checkpoints and a history with the loss, the distillation term and validation
    assert {"best.pt", "last.pt", "history.json"} <= {path.name for path in run.iterdir()}
    validated = [entry["val_psnr"] for entry in qat_result.history if entry["val_psnr"] is not None]
    assert qat_result.history[-1]["iteration"] == 200 and len(validated) == 200 // qat_cfg.val_every
    # the fake-quantized model's PSNR-Y rises as the range shrinks (measured 24.5 dB at step 20, 27.8 at 200), and
    # the trainer's last validation scores what the converted IR scores
    assert validated[-1] > validated[0] + 2
    assert validated[-1] == pytest.approx(qat_psnr, abs=0.05)
    assert all(entry[DISTILL_METRIC] > 0 for entry in qat_result.history)


def test_an_interrupted_qat_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """Stopped after its checkpoint at step 4, the fine-tuning resumes there and ends where an uninterrupted run
    ends; a run folder of other settings is removed, not resumed."""
    model = StretchedRangeNet(gain=150.0).eval()
    hr = data.astronaut()[100:196, 100:196]
    pairs = [("astronaut", imresize(hr, 1 / SCALE), hr)]
    calibration = calibration_patches(pairs, SCALE, 16, 16, seed=0)
    cfg = QatConfig(iterations=8, batch=4, patch=16, distill_batch=4, range_lr=4.0, checkpoint_every=4, val_every=4)

    def fine_tune(run: Path, settings: QatConfig = cfg):
        return quantize_openvino_qat(model, calibration, pairs, pairs, SCALE, settings, run / "int8.xml", run / "qat")

    def weights(run: Path) -> dict[str, torch.Tensor]:
        return torch.load(run / "qat" / "last.pt", weights_only=True)["model"]

    fine_tune(tmp_path / "whole")
    forward = DistillationObjective.forward

    def stop_at_step_6(self, model, loss, iteration):
        if iteration == 5:
            raise Interrupted("stopped in step 6")
        return forward(self, model, loss, iteration)

    with monkeypatch.context() as patch:
        patch.setattr(DistillationObjective, "forward", stop_at_step_6)
        with pytest.raises(Interrupted):
            fine_tune(tmp_path / "resumed")
    assert torch.load(tmp_path / "resumed" / "qat" / "last.pt", weights_only=True)["iteration"] == 4
    resumed = fine_tune(tmp_path / "resumed")
    assert [entry["iteration"] for entry in resumed.history] == [4, 8]
    whole, again = weights(tmp_path / "whole"), weights(tmp_path / "resumed")
    assert whole.keys() == again.keys() and all(torch.equal(whole[k], again[k]) for k in whole)
    # other settings: the old run is removed and the new one starts from step 0
    fine_tune(tmp_path / "resumed", cfg.model_copy(update={"distill_weight": 1.0}))
    assert (
        torch.load(tmp_path / "resumed" / "qat" / "last.pt", weights_only=True)["metadata"]["qat"]["distill_weight"]
        == 1.0
    )


def test_qat_keeps_the_float_modules_and_their_sum_in_float(tmp_path):
    net = SkipNet().eval()
    # the skip's ops and the Add that sums it into the output (NNCF's names for them)
    names = float_scope(net, ["bicubic"]).names
    assert "bicubic/conv2d/0" in names and [name for name in names if not name.startswith("bicubic/")] == ["/add/0"]
    hr = data.astronaut()[:256, :256]
    pairs = [("a", imresize(hr, 1 / SCALE), hr)]
    calibration = calibration_patches(pairs, SCALE, 64, 16, seed=0)
    cfg = QatConfig(iterations=2, batch=2, patch=16, distill_batch=2)
    out = quantize_openvino_qat(
        net, calibration, pairs, pairs, SCALE, cfg, tmp_path / "openvino.xml", tmp_path / "run", ["bicubic"]
    ).xml
    executed = openvino_precisions(out, {})
    float_convs = [layer for layer in executed.float_layers if layer.endswith("(Convolution)")]
    assert executed.int8["Convolution"] == 2 and float_convs == ["bicubic (Convolution)"]
    # the skip is not rounded back to 8 bits: every flat level within one level of fp32
    fp32, int8 = _torch_runner(net), openvino_runner(out, 2)
    flats = [np.full((24, 24, 3), level, np.uint8) for level in (0, 16, 64, 128, 192, 235, 255)]
    errors = [
        output_errors(upscale_tiled(int8, f, SCALE, 64, 4), upscale_tiled(fp32, f, SCALE, 64, 4), 0)["mean_abs"]
        for f in flats
    ]
    assert max(errors) <= 1.0


def test_qat_refuses_ignored_layers():
    with pytest.raises(ValueError, match=r"ignored_layers names layers of fgnas_S_x2, but quantize.mode qat"):
        QuantizeConfig(mode="qat", ignored_layers={"fgnas_S_x2": ["conv_last"], "xlsr": []})


def test_overflow_fix_gives_seven_bit_weights_only_where_int8_sums_saturate(monkeypatch):
    """``auto``: all_layers on an x86 CPU without VNNI / AMX (AVX2 adds u8 x s8 product pairs in int16), first_layer
    with one of them and off x86; a setting other than auto is kept."""
    import edgesr.cpu
    from edgesr.quant.overflow import resolve_overflow_fix, weight_bits

    def on(machine: str, flags: set[str]) -> str:
        monkeypatch.setattr(edgesr.cpu.platform, "machine", lambda: machine)
        monkeypatch.setattr(edgesr.cpu, "cpu_model_and_flags", lambda: ("cpu", frozenset(flags)))
        return resolve_overflow_fix("auto")

    assert on("x86_64", {"avx2", "fma"}) == "all_layers"  # AMD EPYC Zen 3, Intel before Cascade Lake
    assert on("x86_64", {"avx2", "avx512f", "avx512_vnni"}) == "first_layer"
    assert on("x86_64", {"avx2", "avx_vnni"}) == "first_layer"  # Alder Lake and later clients
    assert on("aarch64", {"asimd"}) == "first_layer"
    assert resolve_overflow_fix("first_layer") == "first_layer" and resolve_overflow_fix("all_layers") == "all_layers"
    assert weight_bits("onnxruntime", "first_layer") == "8-bit"
    assert weight_bits("openvino", "first_layer") == "8-bit, first layer 7-bit"


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_int8_keeps_bright_flat_colours_on_this_cpu(tmp_path, runtime):
    """Flat white and saturated colours (in the calibration, as the stage's synthetic patches are) drive activations
    to their top codes, where AVX2's int16 pair sums clip: with this CPU's overflow fix the int8 output stays within
    1.5 levels of fp32. Measured on an AMD EPYC (AVX2, no VNNI): ONNX Runtime with 8-bit weights 0.057 off on flat
    white and 0.062 on cyan (15 levels); with 7-bit weights (all_layers) at most 0.0036 on every colour here."""
    onnx_path = export_onnx(TwoConvNet().eval(), tmp_path / "model.onnx")
    colours = ([1, 1, 1], [1, 0, 0], [0, 0, 1], [0, 1, 1], [1, 0, 1])
    flats = [np.full((1, 3, 16, 16), 1, np.float32) * np.reshape(c, (1, 3, 1, 1)).astype(np.float32) for c in colours]
    rng = np.random.default_rng(1)
    calibration = [rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(24)] + flats
    if runtime == "onnxruntime":
        fp32 = onnxruntime_runner(onnx_path, 2)
        int8 = onnxruntime_runner(quantize_onnxruntime(onnx_path, calibration, tmp_path / "int8.onnx"), 2)
    else:
        xml = export_openvino(onnx_path, tmp_path)["fp32"]
        fp32 = openvino_runner(xml, 2)
        int8 = openvino_runner(quantize_openvino(xml, calibration, tmp_path / "int8.xml"), 2)
    for colour, flat in zip(colours, flats, strict=True):
        assert np.abs(int8(flat) - fp32(flat)).max() < 1.5 / 255, colour
