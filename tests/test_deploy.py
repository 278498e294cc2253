"""Export and tiled upscaling: PyTorch, ONNX Runtime and OpenVINO agree on a real image; tiles are seamless."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from skimage import data
from torch import nn

from edgesr.data.images import as_input
from edgesr.data.imresize import imresize
from edgesr.deploy.export import export_onnx, export_openvino, module_paths, prepare_for_export
from edgesr.deploy.runtimes import onnxruntime_runner, openvino_runner, torch_runner
from edgesr.deploy.tiling import upscale_tiled, windows
from edgesr.models import FGNAS, build_model, default_model_config
from edgesr.search.extract import extract_subnet
from edgesr.search.settings import SupernetConfig
from edgesr.search.supernet import Supernet

SCALE = 2


class SubnetLike(nn.Module):
    """The operators of a searched FGNAS subnet (paper 001 Sec. 3.1) with a BatchNorm to fold: a channel
    gather (``index_select``), concatenation, ReLU / PReLU / tanh branches averaged, a residual, PixelShuffle."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.num_in_ch = 3
        self.conv_first = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.conv_mult = nn.Conv2d(width, width, 3, padding=1)
        self.prelu = nn.PReLU(width)
        self.conv_body = nn.Conv2d(2 * width, width, 3, padding=1)
        self.conv_last = nn.Conv2d(width, 3 * SCALE**2, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(SCALE)
        self.register_buffer("kept", torch.tensor([0, 2, 3, 5, 7]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.conv_first(x)
        mult = self.conv_mult(head)
        mixed = (torch.relu(mult) + self.prelu(mult) + torch.tanh(mult)) / 3
        gathered = torch.zeros_like(head).index_add(1, self.kept, torch.index_select(mixed, 1, self.kept))
        body = head + self.conv_body(torch.cat([gathered, head], dim=1))
        return self.pixel_shuffle(self.conv_last(body))


def _randomised(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so that folding has something to fold."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def real_lr() -> np.ndarray:
    """A real photograph (scikit-image's astronaut), MATLAB-bicubic downscaled: 47x61 LR, odd sides."""
    return imresize(data.astronaut()[40:134, 150:272], 1 / SCALE)


def _fgnas_subnet() -> nn.Module:
    """A searched FGNAS subnet whose blocks read and write channel subsets of the trunk (Gathers)."""
    torch.manual_seed(0)
    supernet = Supernet(SupernetConfig(num_blocks=3, width=8, bicubic_skip=True), SCALE)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for psi in supernet.gate_parameters():
            psi.copy_(torch.rand(psi.shape, generator=generator) - 0.05)
    subnet = extract_subnet(supernet)
    assert subnet.head_to_trunk is not None and any(block.write is not None for block in subnet.body)
    return subnet


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    zoo = {name: build_model(default_model_config(name), SCALE) for name in ("fsrcnn", "xlsr", "sam_sr_xlite")}
    return {"subnet_like": SubnetLike(), "fgnas_subnet": _fgnas_subnet(), **zoo}


@pytest.mark.parametrize("name", list(_models()))
def test_export_agrees_with_pytorch_on_a_real_image(name, real_lr, tmp_path):
    # Given a model with BatchNorm statistics, folded for export
    original = _randomised(_models()[name])
    model = prepare_for_export(original)
    # When it is exported to ONNX and OpenVINO IR
    onnx_path = export_onnx(model, tmp_path / "model.onnx")
    ir = export_openvino(onnx_path, tmp_path)
    # Then the graph has dynamic H and W, no BatchNorm, and PixelShuffle as DepthToSpace
    proto = onnx.load(onnx_path)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[2:]] == ["height", "width"] and proto.opset_import[0].version >= 17
    ops = {node.op_type for node in proto.graph.node}
    assert "BatchNormalization" not in ops
    if isinstance(original, FGNAS):  # the deploy form folds the subnet's channel reads and writes into convs
        assert not ops & {"Gather", "Pad"}
    assert ("DepthToSpace" in ops) == any(isinstance(m, nn.PixelShuffle) for m in model.modules())
    # every convolution remembers the PyTorch module it came from (quantize.ignored_layers names them so)
    paths = module_paths(proto)
    convs = [node.name for node in proto.graph.node if node.op_type in {"Conv", "ConvTranspose"}]
    conv_modules = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)}
    assert all(node in paths for node in convs) and conv_modules <= {paths[node] for node in convs}
    # and every fp32 runtime reproduces PyTorch (unfolded, original model) within 1e-4 on a real image
    x = as_input(real_lr)
    reference = torch_runner(original, 2)(x)
    for runner in (onnxruntime_runner(onnx_path, 2), openvino_runner(ir["fp32"], 2)):
        out = runner(x)
        assert out.shape == (1, 3, SCALE * real_lr.shape[0], SCALE * real_lr.shape[1])
        assert np.abs(out - reference).max() < 1e-4
    # the fp16-compressed IR is close, not exact
    assert np.abs(openvino_runner(ir["fp16"], 2)(x) - reference).max() < 1e-2
    # OpenVINO's runner reads the input in place and shares the request's output buffer: what it returns is
    # still a copy that the next call does not overwrite, and the input is left as it was
    runner, given = openvino_runner(ir["fp32"], 2), x.copy()
    first = runner(x)
    runner(np.ascontiguousarray(x[..., ::-1]))
    assert np.array_equal(first, out) and np.array_equal(x, given)


def test_windows_cover_the_image_once_with_equal_window_sizes():
    covered = np.zeros((37, 50), dtype=int)
    sizes = set()
    for (top, bottom, win_top, win_bottom), (left, right, win_left, win_right) in windows(37, 50, 16, 5):
        covered[top:bottom, left:right] += 1
        # windows index the image padded by 5: each core (at top + 5 there) keeps 5 pixels of context each side
        assert win_top <= top and bottom + 10 <= win_bottom and win_left <= left and right + 10 <= win_right
        assert win_bottom <= 37 + 10 and win_right <= 50 + 10
        sizes.add((win_bottom - win_top, win_right - win_left))
    assert (covered == 1).all()
    assert sizes == {(26, 26)}
    assert list(windows(5, 6, 16, 4)) == [((0, 5, 0, 13), (0, 6, 0, 14))]  # smaller than a tile: one padded window


class BoxBlurUp(nn.Module):
    """A zero-padded 3x3 box blur then nearest-neighbour x2: on a flat image its border sees black outside."""

    def __init__(self) -> None:
        super().__init__()
        self.blur = nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False)
        nn.init.constant_(self.blur.weight, 1 / 9)
        self.up = nn.Upsample(scale_factor=SCALE, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.blur(x))


@pytest.mark.parametrize("border", ["symmetric", "edge"])
def test_border_pixels_get_the_context_of_a_real_image(border):
    # Given a white image and a network with zero padding
    runner = torch_runner(BoxBlurUp().eval(), 2)
    white = np.full((12, 20, 3), 255, dtype=np.uint8)
    # Without padding (no overlap) the border comes back dark: the corner sees 4 of 9 white pixels
    bare = upscale_tiled(runner, white, SCALE, tile=64, overlap=0)
    assert bare[0, 0, 0] == round(255 * 4 / 9) and bare[0, 5, 0] == round(255 * 6 / 9)
    # With the image extended by the overlap the whole output is white, tiled or not
    for tile in (64, 5):
        assert (upscale_tiled(runner, white, SCALE, tile=tile, overlap=2, border=border) == 255).all()
    # and on a real image the interior is untouched by the padding
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    padded = upscale_tiled(runner, image, SCALE, tile=64, overlap=2, border=border).astype(int)
    assert np.abs(padded[2:-2, 2:-2] - upscale_tiled(runner, image, SCALE, 64, 0)[2:-2, 2:-2]).max() <= 1


def test_tiles_are_seamless_with_enough_overlap(real_lr, tmp_path):
    # Given XLSR (5 stacked 3x3 convolutions: 5 LR pixels of receptive radius) on a real image
    torch.manual_seed(0)
    model = prepare_for_export(build_model(default_model_config("xlsr"), SCALE))
    ir = export_openvino(export_onnx(model, tmp_path / "model.onnx"), tmp_path)
    for runner in (torch_runner(model, 2), openvino_runner(ir["fp32"], 2)):
        whole = upscale_tiled(runner, real_lr, SCALE, tile=10_000, overlap=8).astype(int)  # one padded window
        # When tiled with 8 pixels of context, the result equals the whole-image result within 1/255
        tiled = upscale_tiled(runner, real_lr, SCALE, tile=16, overlap=8).astype(int)
        assert np.abs(tiled - whole).max() <= 1
        # and without context the seams show
        assert np.abs(upscale_tiled(runner, real_lr, SCALE, tile=16, overlap=0).astype(int) - whole).max() > 1


def test_int8_verdicts_are_tied_to_the_checked_file(tmp_path, monkeypatch):
    """A verdict holds for the file it was measured on, and for a CPU whose int8 kernels run its weights' grid
    unclipped (8-bit weights need VNNI or AMX on x86: edgesr.quant.overflow)."""
    import edgesr.artifacts
    from edgesr.artifacts import Int8NotDeployableError, check_int8_deployable, file_sha256, model_dir

    folder = model_dir(tmp_path, "int8", "net")
    folder.mkdir(parents=True)
    model = folder / "openvino.xml"
    model.write_text("<net/>")
    with pytest.raises(Int8NotDeployableError, match="has not been checked; run `dvc repro quantize`"):
        check_int8_deployable(tmp_path, "net", "openvino")
    verdicts = {
        "openvino": {"deployable": True, "failures": [], "sha256": file_sha256(model), "overflow_fix": "all_layers"},
        "onnxruntime": {"deployable": False, "failures": ["Set5: mean PSNR-Y drop 0.52 dB > 0.3"], "sha256": "x"},
    }
    (folder / "checks.json").write_text(json.dumps(verdicts))
    check_int8_deployable(tmp_path, "net", "openvino")  # checked and passed: no error
    verdicts["openvino"]["overflow_fix"] = "first_layer"  # 8-bit weights, checked on a CPU with VNNI
    (folder / "checks.json").write_text(json.dumps(verdicts))
    monkeypatch.setattr(edgesr.artifacts, "resolve_overflow_fix", lambda: "first_layer")  # this CPU has VNNI
    check_int8_deployable(tmp_path, "net", "openvino")
    monkeypatch.setattr(edgesr.artifacts, "resolve_overflow_fix", lambda: "all_layers")  # this one has not
    refused = r"8-bit weights \(quantize.overflow_fix first_layer\), and this CPU has no VNNI or AMX"
    with pytest.raises(Int8NotDeployableError, match=refused):
        check_int8_deployable(tmp_path, "net", "openvino")
    verdicts["openvino"]["overflow_fix"] = verdicts["onnxruntime"]["overflow_fix"] = "all_layers"
    (folder / "model.onnx").write_text("onnx")
    with pytest.raises(Int8NotDeployableError, match=r"net int8 on onnxruntime failed the quantize checks: Set5: mean"):
        verdicts["onnxruntime"]["sha256"] = file_sha256(folder / "model.onnx")
        (folder / "checks.json").write_text(json.dumps(verdicts))
        check_int8_deployable(tmp_path, "net", "onnxruntime")
    model.write_text("<net changed='after the checks'/>")
    with pytest.raises(Int8NotDeployableError, match="not the file the quantize stage checked"):
        check_int8_deployable(tmp_path, "net", "openvino")
    (folder / "checks.json").write_text(json.dumps({"openvino": verdicts["openvino"]}))
    with pytest.raises(Int8NotDeployableError, match="has no verdict for onnxruntime"):
        check_int8_deployable(tmp_path, "net", "onnxruntime")
