"""The model zoo: uniform surface over the registry, configs, paper parameter counts, BN folding and
MATLAB-exact bicubic upscaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from edgesr.complexity import count_complexity
from edgesr.data.imresize import imresize
from edgesr.models import (
    MODEL_NAMES,
    MODEL_REGISTRY,
    SAM_SR_LITE,
    SAM_SR_XLITE,
    SUPPORTED_SCALES,
    Bicubic,
    ModelConfig,
    PlainResNetConfig,
    SAMSRConfig,
    build_model,
    default_model_config,
    fold_batchnorm,
)
from edgesr.models.registry import DuplicateNameError, Registry, UnknownNameError
from tests.matlab_reference import matlab_imresize

CONFIG = TypeAdapter(ModelConfig)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- uniform surface, over the registry ------------------------------------------------------------


def test_zoo_covers_every_registered_architecture() -> None:
    assert set(MODEL_REGISTRY.names()) == {"bicubic", "fsrcnn", "espcn", "xlsr", "sam_sr", "plain_resnet", "fgnas"}
    # fgnas has no default: it is built from a searched architecture (tests/test_fgnas.py)
    assert {default_model_config(name).type for name in MODEL_NAMES} | {"fgnas"} == set(MODEL_REGISTRY.names())


@pytest.mark.parametrize("scale", SUPPORTED_SCALES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_maps_rgb_lr_to_rgb_hr(name: str, scale: int) -> None:
    # Given a zoo model built from a plain dict through the discriminated union
    cfg = CONFIG.validate_python(default_model_config(name).model_dump())
    model = build_model(cfg, scale).eval()
    lr = torch.rand(2, 3, 10, 12)
    # When it upscales an RGB batch
    with torch.no_grad():
        sr = model(lr)
    # Then the output is (N, 3, sH, sW) float32
    assert sr.shape == (2, 3, 10 * scale, 12 * scale)
    assert sr.dtype == torch.float32
    assert torch.isfinite(sr).all()
    assert model.num_in_ch == 3


@pytest.mark.parametrize("scale", SUPPORTED_SCALES)
def test_clipped_xlsr_output_stays_in_unit_range(scale: int) -> None:
    # Given XLSR with a last-layer bias that pushes every output above 1, clipped and linear
    clipped = build_model(CONFIG.validate_python({"type": "xlsr"}), scale).eval()
    linear = build_model(CONFIG.validate_python({"type": "xlsr", "output": "linear"}), scale).eval()
    linear.load_state_dict(clipped.state_dict())
    for model in (clipped, linear):
        nn.init.constant_(model.conv_last.bias, 5.0)
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        # Then only the clipped ReLU (paper 003 Eq. 2) bounds the output to [0, 1]
        assert clipped(lr).min() >= 0 and clipped(lr).max() == 1
        assert linear(lr).max() > 1
        nn.init.zeros_(clipped.conv_last.bias)
        out = clipped(lr)
    assert 0 <= out.min() and out.max() <= 1


# --- configs and errors ----------------------------------------------------------------------------


def test_unknown_type_lists_the_allowed_names() -> None:
    with pytest.raises(ValidationError) as info:
        CONFIG.validate_python({"type": "edsr"})
    message = str(info.value)
    assert "'edsr'" in message
    for name in MODEL_REGISTRY.names():
        assert f"'{name}'" in message


def test_unknown_key_and_bad_values_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        CONFIG.validate_python({"type": "fsrcnn", "depth": 3})
    with pytest.raises(ValidationError, match="groups=4"):
        CONFIG.validate_python({"type": "xlsr", "num_feat": 30})
    with pytest.raises(ValidationError, match="divisible by 4"):
        CONFIG.validate_python({"type": "sam_sr", "nf": 18})


@pytest.mark.parametrize("scale", [1, 5, 8, True, 2.0])
def test_build_model_rejects_unsupported_scales(scale: object) -> None:
    with pytest.raises(ValueError, match="scale must be one of 2, 3, 4"):
        build_model(default_model_config("espcn"), scale)  # type: ignore[arg-type]


def test_default_model_config_unknown_name_lists_names() -> None:
    with pytest.raises(ValueError, match="sam_sr_xlite"):
        default_model_config("sam_sr_tiny")


def test_registry_refuses_duplicates_and_lists_known_names() -> None:
    registry: Registry[int] = Registry("thing")
    registry.register("a")(1)
    with pytest.raises(DuplicateNameError, match="'a' is already registered"):
        registry.register("a")(2)
    assert registry.get("a") == 1
    with pytest.raises(UnknownNameError) as info:
        registry.get("b")
    assert str(info.value) == "no thing named 'b'; registered names: 'a'"
    with pytest.raises(DuplicateNameError):
        MODEL_REGISTRY.register("xlsr")(lambda cfg, scale: nn.Identity())


# --- parameter counts from the papers --------------------------------------------------------------


def test_xlsr_x3_matches_paper_003_table1() -> None:
    model = build_model(default_model_config("xlsr"), 3)
    # 448 + 896 + 1,056 + 3 * 3,392 + 1,568 + 7,803 (see edgesr.models.xlsr)
    assert _params(model) == 21_947
    assert _params(model) == pytest.approx(22_000, rel=0.10)


@pytest.mark.parametrize(("name", "paper"), [("fsrcnn", 25_000), ("espcn", 31_000)])
def test_rgb_baselines_x3_match_paper_003_table1(name: str, paper: int) -> None:
    # Table 1 counts FSRCNN* and ESPCN* with RGB input at x3, in thousands
    assert _params(build_model(default_model_config(name), 3)) == pytest.approx(paper, rel=0.02)


@pytest.mark.parametrize(
    ("cfg", "paper", "tolerance", "ours"),
    [(SAM_SR_XLITE, 17_980, 100, 17_931), (SAM_SR_LITE, 558_540, 1_000, 557_571)],
    ids=["XLITE", "LITE"],
)
def test_sam_sr_x4_matches_paper_004_table2(cfg: SAMSRConfig, paper: int, tolerance: int, ours: int) -> None:
    params = _params(build_model(cfg, 4))
    assert abs(params - paper) <= tolerance
    assert params == ours


@pytest.mark.parametrize(
    ("cfg", "without_bn", "without_se"),
    [(SAM_SR_XLITE, 1_440, 4_096), (SAM_SR_LITE, 12_240, 165_888)],
    ids=["XLITE", "LITE"],
)
def test_sam_sr_ablations_match_paper_004_table4(cfg: SAMSRConfig, without_bn: int, without_se: int) -> None:
    # Table 4: XLITE w/o BN -1.44K, w/o SE -4.1K; LITE w/o BN -12K, w/o SE -165K
    full = _params(build_model(cfg, 4))
    assert full - _params(build_model(cfg.model_copy(update={"batch_norm": False}), 4)) == without_bn
    assert full - _params(build_model(cfg.model_copy(update={"se": False}), 4)) == without_se
    assert _params(build_model(cfg.model_copy(update={"bicubic_skip": False}), 4)) == full


# --- SAM_SR behaviour ------------------------------------------------------------------------------


def _randomise_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Running statistics and affine parameters far from their (identity) initial values."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) * 2 - 1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.25)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) - 0.5)


@pytest.mark.parametrize("scale", SUPPORTED_SCALES)
def test_fold_batchnorm_keeps_the_eval_output(scale: int) -> None:
    # Given SAM_SR_XLITE with randomised BatchNorm statistics (identity BN would hide a wrong formula)
    generator = torch.Generator().manual_seed(scale)
    model = build_model(SAM_SR_XLITE, scale)
    _randomise_batchnorm(model, generator)
    model.eval()
    # When every Conv + BN pair is folded
    folded = fold_batchnorm(model)
    lr = torch.rand(2, 3, 9, 11, generator=generator)
    with torch.no_grad():
        expected, actual = model(lr), folded(lr)
    # Then no BatchNorm is left, the original is untouched, and the output is the same
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3 * (1 + SAM_SR_XLITE.num_blocks)
    assert (expected - actual).abs().max() <= 1e-5
    assert _params(folded) == _params(model) - 5 * SAM_SR_XLITE.nf * (1 + SAM_SR_XLITE.num_blocks)


def test_sam_sr_bicubic_skip_is_the_output_when_the_body_is_silent() -> None:
    # Given SAM_SR whose last 1x1 conv is zero, the network adds nothing to the bicubic skip
    model = build_model(SAM_SR_XLITE, 4).eval()
    nn.init.zeros_(model.post[-1].weight)
    nn.init.zeros_(model.post[-1].bias)
    lr = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        assert torch.equal(model(lr), Bicubic(3, 4)(lr))


# --- bicubic: MATLAB imresize exactness ------------------------------------------------------------


def _matlab_imresize_up(image: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB imresize(double(image), scale) of an (H, W, C) image, channel by channel."""
    return np.stack([matlab_imresize(image[..., c].astype(np.float64), scale) for c in range(image.shape[2])], -1)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(values + 0.5), 0, 255).astype(np.int64)


def _bicubic_module(image: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic(scale) on an (H, W, 3) uint8 image scaled to [0, 1] float32; back to [0, 255] float."""
    lr = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        sr = Bicubic(3, scale)(lr)
    return sr[0].permute(1, 2, 0).double().numpy() * 255


@pytest.mark.parametrize("scale", SUPPORTED_SCALES)
def test_bicubic_equals_matlab_imresize_on_uint8_images(scale: int) -> None:
    # Given random uint8 RGB images (odd and even sizes)
    rng = np.random.default_rng(scale)
    for height, width in ((11, 14), (16, 9)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        # When upscaled by the float32 polyphase module and by a loop-by-loop MATLAB reference
        ours = _to_uint8(_bicubic_module(image, scale))
        reference = _to_uint8(_matlab_imresize_up(image, scale))
        # Then the rounded outputs agree exactly, or within 1 grey level on < 0.1% of the pixels
        difference = np.abs(ours - reference)
        assert ours.shape == (height * scale, width * scale, 3)
        assert difference.max() <= 1
        assert (difference > 0).mean() < 1e-3


@pytest.mark.parametrize("scale", SUPPORTED_SCALES)
def test_bicubic_equals_the_data_pipeline_imresize(scale: int) -> None:
    # Given a float image, when upscaled by edgesr.data.imresize and by the module in float64
    image = np.random.default_rng(10 + scale).random((13, 10, 3))
    expected = imresize(image, scale)
    model = Bicubic(3, scale).double()
    with torch.no_grad():
        actual = model(torch.from_numpy(image).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    # Then both are the same MATLAB resize (the module's taps are stored in float32)
    np.testing.assert_allclose(actual, expected, atol=1e-6)


def test_bicubic_keeps_constants_and_has_no_parameters() -> None:
    model = Bicubic(3, 3)
    assert _params(model) == 0 and model.state_dict() == {}
    with torch.no_grad():
        out = model(torch.full((1, 3, 5, 4), 0.25))
    torch.testing.assert_close(out, torch.full((1, 3, 15, 12), 0.25))


def test_plain_resnet_default_is_issue_13s_baseline() -> None:
    # 3x3 head, 8 blocks of two 3x3 convs at 32 channels, 3x3 tail to 12 channels: 152 K parameters, 35 G at 720p
    complexity = count_complexity(build_model(PlainResNetConfig(), 2), 2)
    assert complexity.params == 3 * 32 * 9 + 32 + 8 * 2 * (32 * 32 * 9 + 32) + 32 * 12 * 9 + 12 == 152_332
    assert complexity.mult_adds == 360 * 640 * 9 * (3 * 32 + 16 * 32 * 32 + 32 * 12)


@pytest.mark.parametrize("skip", ["bilinear", "bicubic", "none"])
def test_plain_resnet_skip_is_the_output_when_the_body_is_silent(skip: str) -> None:
    model = build_model(PlainResNetConfig(width=8, num_blocks=2, skip=skip), 3).eval()
    with torch.no_grad():
        model.conv_last.weight.zero_()
        model.conv_last.bias.zero_()
        x = torch.rand(1, 3, 10, 7)
        expected = {
            "bilinear": torch.nn.functional.interpolate(x, scale_factor=3, mode="bilinear"),
            "bicubic": Bicubic(3, 3)(x),
            "none": torch.zeros(1, 3, 30, 21),
        }[skip]
        torch.testing.assert_close(model(x), expected, atol=1e-6, rtol=0)
