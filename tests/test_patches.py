"""PatchSampler: deterministic batches, aligned LR/HR crops, the 8 dihedral transforms, rank slices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgesr.data.patches import NUM_TRANSFORMS, PatchSampler

SCALE = 3
PATCH = 6


def _nearest_pairs(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random LR images of different sizes with HR = nearest-neighbour upsampling by SCALE."""
    rng = np.random.default_rng(seed)
    pairs = []
    for height, width in ((10, 14), (16, 9), (6, 6)):
        lr = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        pairs.append((lr, lr.repeat(SCALE, axis=0).repeat(SCALE, axis=1)))
    return pairs


def _expected_lr_patch(lr: np.ndarray, top: int, left: int, transform: int) -> np.ndarray:
    """The documented convention, in numpy: flip left-right if t >= 4, then rot90 by t % 4 (CCW)."""
    crop = lr[top : top + PATCH, left : left + PATCH]
    if transform >= 4:
        crop = crop[:, ::-1]
    return np.rot90(crop, transform % 4, axes=(0, 1))


def _to_hwc_uint8(batch: torch.Tensor) -> np.ndarray:
    return (batch * 255).round().byte().permute(0, 2, 3, 1).numpy()


def test_batches_are_a_pure_function_of_seed_and_iteration() -> None:
    pairs = _nearest_pairs()

    first = PatchSampler(pairs, SCALE, PATCH, seed=7).batch(5, 16)
    again = PatchSampler(pairs, SCALE, PATCH, seed=7).batch(5, 16)
    next_iteration = PatchSampler(pairs, SCALE, PATCH, seed=7).batch(6, 16)
    other_seed = PatchSampler(pairs, SCALE, PATCH, seed=8).batch(5, 16)

    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], next_iteration[0])
    assert not torch.equal(first[0], other_seed[0])


def test_batch_shapes_dtype_and_range() -> None:
    lr, hr = PatchSampler(_nearest_pairs(), SCALE, PATCH, seed=0).batch(0, 5)

    assert lr.shape == (5, 3, PATCH, PATCH) and hr.shape == (5, 3, SCALE * PATCH, SCALE * PATCH)
    assert lr.dtype == hr.dtype == torch.float32
    assert 0 <= lr.min() and lr.max() <= 1 and 0 <= hr.min() and hr.max() <= 1


def test_every_patch_is_the_drawn_crop_and_hr_stays_aligned_under_all_8_transforms() -> None:
    # given HR built as a nearest upsampling of LR, so an aligned HR patch is the upsampled LR patch
    pairs = _nearest_pairs()
    sampler = PatchSampler(pairs, SCALE, PATCH, seed=1)
    seen: set[int] = set()
    for iteration in range(4):
        # when a batch is drawn
        draw = sampler.draw(iteration, 32)
        lr, hr = (_to_hwc_uint8(t) for t in sampler.batch(iteration, 32))

        # then each LR patch is the drawn crop under the drawn transform, and HR matches it pixel for pixel
        for i in range(32):
            image, top, left, transform = (int(v[i]) for v in (draw.image, draw.top, draw.left, draw.transform))
            np.testing.assert_array_equal(lr[i], _expected_lr_patch(pairs[image][0], top, left, transform))
            np.testing.assert_array_equal(hr[i], lr[i].repeat(SCALE, axis=0).repeat(SCALE, axis=1))
            seen.add(transform)
    assert seen == set(range(NUM_TRANSFORMS))


def test_crops_cover_whole_images_and_every_image() -> None:
    sampler = PatchSampler(_nearest_pairs(), SCALE, PATCH, seed=2)

    draw = sampler.draw(0, 4000)

    assert set(draw.image.tolist()) == {0, 1, 2}
    first = draw.image == 0
    assert draw.top[first].min() == 0 and draw.top[first].max() == 10 - PATCH
    assert draw.left[first].min() == 0 and draw.left[first].max() == 14 - PATCH
    assert set(draw.top[draw.image == 2].tolist()) == {0}


def test_transforms_are_equally_likely() -> None:
    counts = np.bincount(PatchSampler(_nearest_pairs(), SCALE, PATCH, seed=3).draw(0, 80_000).transform)

    assert counts.shape == (NUM_TRANSFORMS,)
    np.testing.assert_allclose(counts / 80_000, 1 / NUM_TRANSFORMS, atol=0.005)


def test_rank_slices_concatenate_to_the_global_batch() -> None:
    sampler = PatchSampler(_nearest_pairs(), SCALE, PATCH, seed=4)
    global_lr, global_hr = sampler.batch(9, 12)

    slices = [sampler.batch(9, 12, rank=rank, world_size=3) for rank in range(3)]

    assert all(lr.shape[0] == 4 for lr, _ in slices)
    assert torch.equal(torch.cat([lr for lr, _ in slices]), global_lr)
    assert torch.equal(torch.cat([hr for _, hr in slices]), global_hr)


def test_global_batch_must_divide_by_world_size() -> None:
    sampler = PatchSampler(_nearest_pairs(), SCALE, PATCH, seed=0)

    with pytest.raises(ValueError, match="global batch_size 10 must be divisible by the number of processes"):
        sampler.batch(0, 10, rank=0, world_size=4)


def test_images_smaller_than_the_patch_are_named() -> None:
    pairs = _nearest_pairs()

    with pytest.raises(
        ValueError, match=r"1 training image\(s\) smaller than the 8x8 LR patch \(train.lr_patch\): image 2 is 6x6"
    ):
        PatchSampler(pairs, SCALE, lr_patch=8, seed=0)
    with pytest.raises(ValueError, match=r"image 1 is 16x9 \(LR, HxW\); image 2 is 6x6 \(LR, HxW\)"):
        PatchSampler(pairs, SCALE, lr_patch=10, seed=0)


def test_misaligned_or_non_uint8_pairs_are_rejected() -> None:
    lr, hr = _nearest_pairs()[0]

    with pytest.raises(ValueError, match=r"training pair 0: HR shape \(30, 42, 3\) is not 2 x LR shape \(10, 14, 3\)"):
        PatchSampler([(lr, hr)], 2, PATCH, seed=0)
    with pytest.raises(ValueError, match="training pair 0: LR must be a uint8 RGB array"):
        PatchSampler([(lr.astype(np.float32), hr)], SCALE, PATCH, seed=0)
