"""ClassSR-style composition: grid, classifier, losses, edge router, composed inference, accounting, seams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError
from skimage import data as skimage_data

from edgesr.architectures import ESPCNConfig, FSRCNNConfig
from edgesr.compose.accounting import branch_patch_costs, composed_cost
from edgesr.compose.classifier import PatchClassifier
from edgesr.compose.composed import ComposedModel, FixedRouter
from edgesr.compose.deployed import composed_model
from edgesr.compose.edge import EdgeRouter, EdgeTable, build_edge_table, edge_scores, patch_mse
from edgesr.compose.grid import blend, extract_patches, patch_grid, positions
from edgesr.compose.losses import average_loss, class_loss
from edgesr.compose.runners import torch_batch_runner
from edgesr.compose.seams import seam_error
from edgesr.compose.settings import ClassifierConfig, ComposeConfig
from edgesr.compose.training import collapsed_branch, train_classifier
from edgesr.data.images import as_image, as_input
from edgesr.data.imresize import imresize, modcrop
from edgesr.data.patches import PatchSampler
from edgesr.errors import UsageError
from edgesr.models import build_model, default_model_config
from edgesr.settings import Params
from edgesr.stages import compose as compose_stage

SCALE = 2
ROOT = Path(__file__).resolve().parents[1]


def tiny_branches() -> list[torch.nn.Module]:
    """Two real zoo models of different cost, untrained (seeded)."""
    torch.manual_seed(0)
    return [
        build_model(ESPCNConfig(n1=8, n2=4), SCALE).eval(),
        build_model(FSRCNNConfig(d=12, s=4, m=1), SCALE).eval(),
    ]


def photo_pair(size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """An HR crop of scikit-image's astronaut (face, hair, flat background) and its MATLAB-bicubic LR."""
    hr = modcrop(skimage_data.astronaut()[40 : 40 + size, 150 : 150 + int(size * 1.25)], SCALE)
    return imresize(hr, 1 / SCALE), hr


def reference_tiled(model: torch.nn.Module, image: np.ndarray, patch: int, stride: int) -> np.ndarray:
    """One patch at a time, summed and divided by a per-pixel count (the plain reading of ClassSR's test)."""
    _, _, height, width = image.shape
    total = np.zeros((1, 3, SCALE * height, SCALE * width))
    count = np.zeros((SCALE * height, SCALE * width))
    for top in positions(height, patch, stride):
        for left in positions(width, patch, stride):
            with torch.no_grad():
                out = model(torch.from_numpy(image[:, :, top : top + patch, left : left + patch])).numpy()
            rows, cols = slice(SCALE * top, SCALE * (top + patch)), slice(SCALE * left, SCALE * (left + patch))
            total[:, :, rows, cols] += out
            count[rows, cols] += 1
    return total / count


# --- grid -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "expected"), [(32, [0]), (60, [0, 28]), (61, [0, 28, 29]), (100, [0, 28, 56, 68])])
def test_positions_step_by_stride_and_the_last_patch_ends_at_the_edge(length, expected):
    assert positions(length, 32, 28).tolist() == expected


def test_the_grid_covers_every_pixel_and_blend_keeps_the_full_size():
    grid = patch_grid(61, 100, 32, 28)
    assert grid.shape == (3, 4)
    coverage = grid.coverage()
    assert coverage.min() == 1
    assert coverage[0, 0] == 1 and coverage[0, 28] == 2 and coverage[29, 28] == 6  # 3 row x 2 column patches
    ones = np.ones((len(grid), 3, 64, 64), dtype=np.float32)
    assert blend(ones, grid, 2).shape == (1, 3, 122, 200)
    np.testing.assert_allclose(blend(ones, grid, 2), 1.0)


@pytest.mark.parametrize(
    ("height", "width", "patch", "stride"),
    [(32, 32, 32, 28), (61, 100, 32, 28), (33, 60, 32, 28), (70, 45, 32, 8), (64, 96, 32, 32), (40, 40, 16, 11)],
)
def test_blend_is_the_sum_of_the_placed_patches_over_the_count(height, width, patch, stride):
    grid = patch_grid(height, width, patch, stride)
    outputs = np.random.default_rng(0).random((len(grid), 3, 2 * patch, 2 * patch), dtype=np.float32)
    total, count = np.zeros((3, 2 * height, 2 * width)), np.zeros((2 * height, 2 * width))
    for output, top, left in zip(outputs, *grid.tops_lefts(), strict=True):
        total[:, 2 * top : 2 * (top + patch), 2 * left : 2 * (left + patch)] += output
        count[2 * top : 2 * (top + patch), 2 * left : 2 * (left + patch)] += 1
    np.testing.assert_allclose(blend(outputs, grid, 2)[0], total / count, rtol=1e-6)


def test_grid_rejects_a_stride_that_leaves_gaps():
    with pytest.raises(UsageError, match="stride must be in"):
        positions(100, 32, 33)
    with pytest.raises(ValidationError, match="leaves LR pixels between patches uncovered"):
        ComposeConfig(patch=32, stride=40)
    with pytest.raises(ValidationError, match="compose.patch 30 is not a multiple of 4"):
        ComposeConfig(patch=30, stride=28)


# --- classifier and ClassSR's losses ---------------------------------------------------------------------


def test_classifier_has_classsr_size():
    classifier = PatchClassifier(3)
    assert sum(p.numel() for p in classifier.parameters()) == 60_035  # DESIGN.md: about 60 K
    costs = classifier.mult_adds(patch_grid(32, 32, 32, 28))
    assert costs == 3_801_184  # DESIGN.md: 3.8 M Mult-Adds per 32x32 patch


def test_class_loss_reference_values():
    one_hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert class_loss(one_hot).item() == 0.0
    assert class_loss(torch.full((2, 3), 1 / 3)).item() == pytest.approx(2.0)  # M - 1
    # 2 - (|.5-.3| + |.5-.2| + |.3-.2|) = 2 - 0.6 = 1.4; batch mean with a one-hot row: 0.7
    assert class_loss(torch.tensor([[0.5, 0.3, 0.2]])).item() == pytest.approx(1.4)
    assert class_loss(torch.tensor([[0.5, 0.3, 0.2], [0.0, 1.0, 0.0]])).item() == pytest.approx(0.7)
    assert class_loss(torch.full((1, 4), 0.25)).item() == pytest.approx(3.0)  # M = 4: M - 1


def test_average_loss_reference_values():
    assert average_loss(torch.eye(3)).item() == 0.0  # every branch one patch of three
    # B = 3 all to branch 0: (|3 - 1| + |0 - 1| + |0 - 1|) / (4 * 1) = 1
    assert average_loss(torch.tensor([[1.0, 0.0, 0.0]] * 3)).item() == pytest.approx(1.0)
    # B = 2, M = 2: sums (1.5, 0.5), share 1: (0.5 + 0.5) / 4 = 0.25
    assert average_loss(torch.tensor([[1.0, 0.0], [0.5, 0.5]])).item() == pytest.approx(0.25)


def test_the_classifier_pass_over_the_whole_image_equals_the_per_patch_pass():
    torch.manual_seed(0)
    classifier = PatchClassifier(3).eval()
    image = np.random.default_rng(0).random((1, 3, 70, 93), dtype=np.float32)
    grid = patch_grid(70, 93, 32, 28)
    tops, lefts = grid.tops_lefts()
    on_lattice = (tops % 4 == 0) & (lefts % 4 == 0)
    assert on_lattice.any() and not on_lattice.all()  # both paths are exercised (93 - 32 = 61, 70 - 32 = 38)
    with torch.no_grad():
        per_patch = classifier(torch.from_numpy(extract_patches(image[0], grid)))
    whole = classifier.grid_logits(torch.from_numpy(image), grid)
    torch.testing.assert_close(whole, per_patch, atol=1e-5, rtol=1e-5)
    # its cost: the features on the 68x92 lattice (17 x 23 positions of 59,392 Mult-Adds), the 6 patches of the
    # last row or column (38 and 61 are off the lattice) on their own, the linear layer (96) for all 12
    per_position, linear = 59_392, 96
    assert classifier.mult_adds(grid) == 17 * 23 * per_position + 6 * 64 * per_position + 12 * linear


def test_training_keeps_branches_frozen_and_learns_to_prefer_the_better_branch():
    lr, hr = photo_pair(128)
    bicubic = build_model(default_model_config("bicubic"), SCALE)
    torch.manual_seed(0)
    bad = build_model(ESPCNConfig(n1=8, n2=4), SCALE)  # untrained: far from the HR patch
    before = [p.clone() for p in bad.parameters()]
    classifier = PatchClassifier(2)
    cfg = ClassifierConfig(iterations=40, batch_size=8, lr=3e-3, average_weight=0.0, log_every=20)
    result = train_classifier(
        classifier, [bicubic, bad], ["bicubic", "bad"], PatchSampler([(lr, hr)], SCALE, 16, 0), cfg
    )
    assert all(torch.equal(a, b) for a, b in zip(before, bad.parameters(), strict=True))
    assert [r["iteration"] for r in result.history] == [20, 40]
    assert sum(result.histogram) == 20 * 8
    assert result.history[-1]["share/bicubic"] == 1.0
    assert result.collapsed == "bicubic"  # with the average loss off it collapses, and says so


def test_classifier_training_is_a_function_of_the_seed():
    lr, hr = photo_pair(96)
    branches = tiny_branches()
    cfg = ClassifierConfig(iterations=5, batch_size=4, log_every=5)
    weights = []
    for _ in range(2):
        torch.manual_seed(cfg.seed)
        classifier = PatchClassifier(2)
        train_classifier(classifier, branches, ["a", "b"], PatchSampler([(lr, hr)], SCALE, 16, cfg.seed), cfg)
        weights.append(torch.cat([p.flatten() for p in classifier.parameters()]))
    assert torch.equal(*weights)


def test_collapse_is_reported_above_the_configured_share():
    assert collapsed_branch([95, 5, 0], ["S", "M", "L"], 0.9) == "S"
    assert collapsed_branch([60, 30, 10], ["S", "M", "L"], 0.9) is None


# --- edge router ------------------------------------------------------------------------------------------


def test_edge_score_reference_values():
    flat = np.full((1, 3, 8, 8), 0.4, dtype=np.float32)
    step = np.zeros((1, 3, 8, 8), dtype=np.float32)
    step[..., 4:] = 1.0  # Y jumps 219 levels; |Laplacian| 219 on 2 of the 6 interior columns
    assert edge_scores(np.concatenate([flat, step])).tolist() == pytest.approx([0.0, 73.0])


def test_patch_mse_reference_value():
    hr = np.zeros((1, 3, 4, 4), dtype=np.uint8)
    sr = np.full((1, 3, 4, 4), 1 / 255, dtype=np.float32)  # one level in R, G and B: Y off by 219 / 255
    assert patch_mse(sr, hr)[0] == pytest.approx((219 / 255) ** 2)


def test_edge_table_and_eta_trade_psnr_for_cost():
    scores = np.arange(100, dtype=np.float64)
    mse_at = lambda db: 255.0**2 / 10 ** (db / 10)  # noqa: E731
    mse = np.stack([np.where(scores < 50, mse_at(30), mse_at(25)), np.full(100, mse_at(31))], axis=1)
    table = build_edge_table(scores, mse, np.array([1e6, 4e6]), bins=2)
    assert table.costs == [0.25, 1.0]
    assert np.asarray(table.psnr) == pytest.approx(np.array([[30.0, 31.0], [25.0, 31.0]]))
    patches = np.concatenate(
        [np.full((1, 3, 8, 8), 0.5, np.float32), np.tile([0.0, 1.0], (1, 3, 8, 4)).astype(np.float32)]
    )
    assert edge_scores(patches)[1] > 50
    grid = patch_grid(8, 8, 8, 8)
    assert EdgeRouter(table, eta=0.0).route(patches, patches, grid).tolist() == [1, 1]  # best PSNR
    assert EdgeRouter(table, eta=2.0).route(patches, patches, grid).tolist() == [0, 1]  # 29.5 > 29; 24.5 < 29
    assert EdgeRouter(table, eta=100.0).route(patches, patches, grid).tolist() == [0, 0]  # cheapest


def test_a_bin_averages_mse_not_decibels():
    """One patch a branch gets exactly right must not outweigh its bin: PSNR of the mean MSE (1 and 3
    levels^2 -> 2 -> 45.1 dB), not the mean PSNR (where the perfect patch alone would give 108 dB)."""
    table = build_edge_table(np.array([1.0, 2.0, 3.0]), np.array([[0.0], [1.0], [5.0]]), np.array([1.0]), bins=1)
    assert table.psnr[0][0] == pytest.approx(10 * np.log10(255**2 / 2.0))


# --- composed inference -----------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1])
def test_every_patch_to_one_branch_equals_that_branch_tiled(index):
    branches = tiny_branches()
    lr, _ = photo_pair(150)  # LR 75 x 93: the last row and column end at the edge, off the stride
    image = as_input(lr)
    composed = ComposedModel([torch_batch_runner(b, chunk=5) for b in branches], FixedRouter(index), SCALE)
    result = composed.compose(image)
    assert result.histogram(2) == [len(result.grid) if b == index else 0 for b in range(2)]
    assert result.sr.shape == (1, 3, 2 * lr.shape[0], 2 * lr.shape[1])
    np.testing.assert_allclose(result.sr, reference_tiled(branches[index], image, 32, 28), atol=1e-5)


def test_an_image_smaller_than_a_patch_is_padded_and_cropped_back():
    branches = tiny_branches()
    composed = ComposedModel([torch_batch_runner(b, chunk=4) for b in branches], FixedRouter(1), SCALE)
    image = np.random.default_rng(1).random((1, 3, 20, 40), dtype=np.float32)
    padded = np.pad(image, ((0, 0), (0, 0), (0, 12), (0, 0)), mode="symmetric")
    out = composed(image)
    assert out.shape == (1, 3, 40, 80)
    np.testing.assert_allclose(out, reference_tiled(branches[1], padded, 32, 28)[:, :, :40], atol=1e-5)


def test_a_composition_needs_two_branches():
    with pytest.raises(UsageError, match="at least two branches.*compose.branches"):
        ComposedModel([torch_batch_runner(tiny_branches()[0], 4)], FixedRouter(0), SCALE)


def test_no_seam_where_patches_of_different_branches_meet():
    lr, hr = photo_pair(192)
    bicubic = build_model(default_model_config("bicubic"), SCALE)
    branches = [torch_batch_runner(bicubic, 8), torch_batch_runner(bicubic, 8)]
    # branch 1 is a different network: bicubic with a slight sharpening (3x3 unsharp mask after it)
    sharpen = torch.nn.Conv2d(3, 3, 3, padding=1, padding_mode="replicate", bias=False, groups=3)
    with torch.no_grad():
        sharpen.weight[:] = torch.tensor([[0, -0.1, 0], [-0.1, 1.4, -0.1], [0, -0.1, 0]])
    branches[1] = torch_batch_runner(torch.nn.Sequential(bicubic, sharpen), 8)
    table = EdgeTable(edges=[8.0], psnr=[[30.0, 20.0], [20.0, 30.0]], costs=[0.5, 1.0])  # detail -> branch 1
    result = ComposedModel(branches, EdgeRouter(table, eta=0.0), SCALE).compose(as_input(lr))
    assert 0 < sum(result.routes) < len(result.routes)  # both branches take patches
    alone = [as_image(ComposedModel(branches, FixedRouter(b), SCALE).compose(as_input(lr)).sr) for b in range(2)]
    seams = seam_error(as_image(result.sr), hr, alone, result.grid, result.routes, SCALE)
    assert seams["mixed_fraction"] > 0.1
    # where branches meet the error is no more than the worse branch's alone there (a misplaced or
    # unnormalised patch, or a seam, would exceed it)
    assert seams["mixed_mae"] <= max(seams["branch_mae"]) + 0.05
    assert seams["ratio"] <= 1.01
    # and no step where the overlap of the two branches begins: as smooth as either branch alone there
    assert abs(seams["step_excess"]) <= 0.25


def test_the_border_step_sees_a_seam_the_error_ratio_cannot():
    """Branches 3 levels too bright and 3 levels too dark: their average is closer to the truth than
    either (ratio < 1), but a 1.5-level step shows wherever the overlap begins."""
    lr, hr = photo_pair(192)
    bicubic = torch_batch_runner(build_model(default_model_config("bicubic"), SCALE), 8)
    branches = [lambda x: bicubic(x) + 3 / 255, lambda x: bicubic(x) - 3 / 255]
    table = EdgeTable(edges=[8.0], psnr=[[30.0, 20.0], [20.0, 30.0]], costs=[0.5, 1.0])
    result = ComposedModel(branches, EdgeRouter(table, eta=0.0), SCALE).compose(as_input(lr))
    assert 0 < sum(result.routes) < len(result.routes)
    alone = [as_image(ComposedModel(branches, FixedRouter(b), SCALE).compose(as_input(lr)).sr) for b in range(2)]
    seams = seam_error(as_image(result.sr), hr, alone, result.grid, result.routes, SCALE)
    assert seams["ratio"] < 1.0
    assert seams["step_excess"] > 0.5


# --- accounting -------------------------------------------------------------------------------------------


def test_mult_adds_both_conventions():
    branches = tiny_branches()
    costs = branch_patch_costs(branches, SCALE, 32)
    assert costs[1] > costs[0]
    largest = branches[1]
    grid = patch_grid(64, 96, 32, 32)  # stride = patch: no overlap, the patches tile the frame exactly
    every_l = np.ones(len(grid), dtype=np.int64)
    cost = composed_cost(every_l, costs, 0, largest, grid, SCALE).as_dict()
    assert cost["percent_of_largest_patches"] == pytest.approx(100.0)
    assert cost["percent_of_largest_frame"] == pytest.approx(100.0, abs=0.2)  # the deconv's frame border only
    overlapping = patch_grid(88, 116, 32, 28)  # ClassSR's stride: 3 x 4 patches cover 88x116 LR pixels
    cost = composed_cost(np.zeros(len(overlapping), dtype=np.int64), costs, 0, largest, overlapping, SCALE)
    assert cost.as_dict()["percent_of_largest_patches"] == pytest.approx(100.0 * costs[0] / costs[1])
    assert cost.branches == 12 * costs[0] and cost.largest_patches == 12 * costs[1]
    classifier = PatchClassifier(2)
    on_lattice = patch_grid(64, 96, 32, 32)
    # non-overlapping conv windows: the whole-image pass costs exactly the per-patch passes
    assert classifier.mult_adds(on_lattice) == len(on_lattice) * classifier.mult_adds(patch_grid(32, 32, 32, 32))


# --- configuration ----------------------------------------------------------------------------------------


def _params_with(mutate) -> dict:
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(data)
    return data


def test_compose_errors_name_the_key_and_the_fix(tmp_path):
    with pytest.raises(ValidationError, match=r"compose.branches lists a model twice"):
        Params.model_validate(_params_with(lambda d: d["compose"].update(branches=["xlsr", "xlsr"])))
    # checked where the composition is used, so that narrowing deploy.models stops no other command
    params = Params.model_validate(_params_with(lambda d: d["compose"].update(branches=["xlsr", "sam_sr_xlite"])))
    with pytest.raises(UsageError, match=r"compose.branches \(null: the retrained subnets\) names sam_sr_xlite, which"):
        params.compose_branches()
    params = Params.model_validate(_params_with(lambda d: d["compose"].update(large_set="Urban100")))
    with pytest.raises(
        UsageError, match=r"compose.large_set 'Urban100' is not a quantize.photo_sets name \(SunHays80\)"
    ):
        compose_stage.run(params, tmp_path)


def test_default_branches_are_the_retrained_subnets_and_one_is_not_enough():
    def s_only(data: dict) -> None:
        data["compose"].update(branches=None)
        data["search"]["sizes"].pop("RT")  # the default also searches the real-time size
        data["deploy"]["models"].remove("fgnas_RT_x2")

    params = Params.model_validate(_params_with(s_only))
    assert params.compose_branches() == ["fgnas_S_x2"]
    with pytest.raises(UsageError, match=r"at least two branches, got 1; list models in compose.branches"):
        composed_model(params, "torch", "fp32")
