"""Sources, the prepare configuration, and the prepared dataset: exact LR/HR pairs, a truthful
manifest, bad input reported and skipped, nothing half-written, determinism."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edgesr.data.images import load_rgb8, save_png
from edgesr.data.imresize import imresize, modcrop
from edgesr.data.prepare import available_benchmarks, load_pairs, prepare, read_manifest
from edgesr.data.settings import PrepareConfig
from edgesr.data.sources import EMBEDDED_NAMES, EmptySourceError, SkippedImage, embedded_images, folder_images


def _image(seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth content plus noise, so bicubic results are not trivial
    y, x = np.mgrid[0:height, 0:width]
    base = 128 + 80 * np.sin(x / 5.0 + seed)[..., None] * np.cos(y / 7.0)[..., None]
    return np.clip(base + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """A training folder with 6 good images (one grey), a corrupt file, a too-small image and a
    non-image file, and a benchmark folder of 2 images."""
    train = tmp_path / "inputs" / "train"
    for index, (height, width) in enumerate([(50, 61), (45, 47), (64, 48), (48, 53), (52, 52), (48, 70)]):
        save_png(train / f"img{index}.png", _image(index, height, width))
    save_png(train / "grey.png", _image(10, 44, 44)[..., 0])
    (train / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    save_png(train / "tiny.png", _image(11, 30, 80))
    (train / "notes.txt").write_text("not an image")
    bench = tmp_path / "inputs" / "bench"
    save_png(bench / "b1.png", _image(20, 37, 29))
    save_png(bench / "b2.png", _image(21, 24, 24))  # below min_hr_size: benchmarks keep every image
    return {"train": train, "bench": bench, "root": tmp_path}


def _config(folders: dict[str, Path], **changes: object) -> PrepareConfig:
    values: dict[str, object] = {
        "train_sources": ["inputs/train"],  # relative: resolved against root
        "val_images": [],
        "val_fraction": 0.3,
        "benchmarks": {"Bench": "inputs/bench", "Gone": "inputs/does-not-exist"},
        "scales": [2, 3, 4],
        "min_hr_size": 40,
    }
    return PrepareConfig(**{**values, **changes})


def _all_files(manifest: dict) -> list[dict]:
    return [
        item
        for data in manifest["sets"].values()
        for per_scale in data["scales"].values()
        for entry in per_scale["files"]
        for item in (entry["hr"], entry["lr"])
    ]


def test_embedded_images_are_the_eleven_rgb8_photographs() -> None:
    images = embedded_images()
    assert [name for name, _ in images] == list(EMBEDDED_NAMES)
    assert len(images) == 11 and {"astronaut", "motorcycle_left", "motorcycle_right", "china"} <= set(EMBEDDED_NAMES)
    for _, image in images:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 300
    left, right = dict(images)["motorcycle_left"], dict(images)["motorcycle_right"]
    assert left.shape == right.shape and not np.array_equal(left, right)


def test_folder_images_skips_and_reports_unreadable_files(
    folders: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    skipped: list[SkippedImage] = []
    names = [name for name, _ in folder_images(folders["train"], skipped)]
    assert names == ["grey", "img0", "img1", "img2", "img3", "img4", "img5", "tiny"]
    assert [s.name for s in skipped] == ["corrupt.png"]
    corrupt = folders["train"] / "corrupt.png"
    assert capsys.readouterr().err == f"skipped {corrupt}: not a recognised image format (corrupt or wrong extension)\n"


def test_empty_and_missing_folders_name_the_path(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images")
    with pytest.raises(EmptySourceError, match=rf"{tmp_path / 'empty'} holds no image files.*\.png"):
        folder_images(tmp_path / "empty")
    with pytest.raises(EmptySourceError, match=rf"{tmp_path / 'missing'} does not exist: expected a folder"):
        folder_images(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"junk")
    with pytest.raises(EmptySourceError, match="none of its 1 image files"):
        list(folder_images(tmp_path / "bad"))


def test_prepare_writes_exact_pairs_and_a_truthful_manifest(
    folders: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = folders["root"] / "prepared"
    manifest = prepare(_config(folders), out, root=folders["root"])
    captured = capsys.readouterr()
    assert "benchmark Gone skipped" in captured.out and "corrupt.png: not a recognised image format" in captured.err
    assert json.loads((out / "manifest.json").read_text()) == manifest == read_manifest(out)

    # 8 readable training images, 1 too small; 3 of them held out for validation
    assert manifest["counts"] == {
        "train": {"x2": 4, "x3": 4, "x4": 4},
        "val": {"x2": 3, "x3": 3, "x4": 3},
        "Bench": {"x2": 2, "x3": 2, "x4": 2},
    }
    assert manifest["missing_benchmarks"] == {"Gone": "inputs/does-not-exist"}
    reasons = {s["image"]: s["reason"] for s in manifest["skipped"]}
    assert set(reasons) == {"corrupt.png", "tiny"}
    assert "not a recognised image format" in reasons["corrupt.png"]
    assert reasons["tiny"] == "shorter side 28 px after mod-crop is below min_hr_size 40"
    assert available_benchmarks(out) == ["Bench"]

    for item in _all_files(manifest):
        path = out / item["path"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == item["sha256"]
        assert load_rgb8(path).shape == (item["height"], item["width"], 3)

    sources = {name: image for name, image in folder_images(folders["bench"])}
    for scale in (2, 3, 4):
        pairs = load_pairs(out, "Bench", scale)
        assert [name for name, _, _ in pairs] == ["b1", "b2"]
        for name, lr, hr in pairs:
            assert hr.shape == (lr.shape[0] * scale, lr.shape[1] * scale, 3)
            np.testing.assert_array_equal(hr, modcrop(sources[name], scale))
            np.testing.assert_array_equal(lr, imresize(hr, 1 / scale))
        for split in ("train", "val"):
            for _, lr, hr in load_pairs(out, split, scale):
                assert hr.shape == (lr.shape[0] * scale, lr.shape[1] * scale, 3)
    # val_fraction 0.3 of 9 sorted files: indices 1, 4, 7, spread over the folder
    assert [f["name"] for f in manifest["sets"]["val"]["scales"]["x3"]["files"]] == ["grey", "img2", "img5"]
    grey = load_rgb8(out / "val" / "X3" / "HR" / "grey.png")
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 0], grey[..., 2])
    assert sorted(p.name for p in folders["root"].iterdir()) == ["inputs", "prepared"]  # no temporaries


def test_prepare_is_deterministic_and_replaces_the_old_output(folders: dict[str, Path]) -> None:
    root = folders["root"]
    first = prepare(_config(folders), root / "a", root=root)
    second = prepare(_config(folders), root / "b", root=root)
    assert first == second
    prepare(_config(folders, scales=[2]), root / "a", root=root)
    assert sorted(p.name for p in (root / "a" / "train").iterdir()) == ["X2"]
    assert sorted(p.name for p in root.iterdir()) == ["a", "b", "inputs"]


def test_failed_prepare_keeps_the_previous_output(folders: dict[str, Path]) -> None:
    root = folders["root"]
    before = prepare(_config(folders), root / "prepared", root=root)
    (root / "inputs" / "empty").mkdir()
    with pytest.raises(EmptySourceError, match=rf"{root / 'inputs' / 'empty'} holds no image files"):
        prepare(_config(folders, train_sources=["inputs/empty"]), root / "prepared", root=root)
    assert read_manifest(root / "prepared") == before
    assert sorted(p.name for p in root.iterdir()) == ["inputs", "prepared"]


def test_names_are_made_unique_across_sources(folders: dict[str, Path]) -> None:
    root = folders["root"]
    other = root / "inputs" / "other"
    save_png(other / "img0.png", _image(30, 48, 48))
    cfg = _config(folders, train_sources=["inputs/train", str(other)], val_images=["img1"], val_fraction=0.0)
    manifest = prepare(cfg, root / "prepared", root=root)
    train = manifest["sets"]["train"]["scales"]["x2"]["files"]
    assert [(f["name"], f["source"]) for f in train if f["name"].startswith("img0")] == [
        ("img0", "inputs/train"),
        ("img0_2", str(other)),
    ]
    assert [f["name"] for f in manifest["sets"]["val"]["scales"]["x2"]["files"]] == ["img1"]


def test_split_problems_are_errors_that_say_what_to_change(folders: dict[str, Path]) -> None:
    root = folders["root"]
    with pytest.raises(ValueError, match=r"val_images \['nope'\] are not among the training sources"):
        prepare(_config(folders, val_images=["nope"]), root / "out", root=root)
    with pytest.raises(EmptySourceError, match="the val split is empty"):
        prepare(_config(folders, val_images=["tiny"], val_fraction=0.0), root / "out", root=root)
    assert not (root / "out").exists()


def test_load_pairs_errors_name_what_exists(folders: dict[str, Path]) -> None:
    root = folders["root"]
    with pytest.raises(FileNotFoundError, match="prepare the data first"):
        load_pairs(root / "nothing", "train", 2)
    prepare(_config(folders, scales=[2]), root / "out", root=root)
    with pytest.raises(ValueError, match="has no set 'Set5'; it has train, val, Bench"):
        load_pairs(root / "out", "Set5", 2)
    with pytest.raises(ValueError, match="no x4 pairs for val; prepared scales: x2"):
        load_pairs(root / "out", "val", 4)


def test_embedded_default_split(tmp_path: Path) -> None:
    manifest = prepare(PrepareConfig(scales=[4], benchmarks={}), tmp_path / "prepared")
    names = {split: [f["name"] for f in manifest["sets"][split]["scales"]["x4"]["files"]] for split in ("train", "val")}
    assert names["val"] == ["chelsea", "flower"]
    assert sorted(names["train"] + names["val"]) == sorted(EMBEDDED_NAMES)
    assert manifest["skipped"] == [] and available_benchmarks(tmp_path / "prepared") == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scales": [5]}, "Input should be 2, 3 or 4"),
        ({"scales": [2, 2]}, "scales listed twice"),
        ({"train_sources": []}, "at least one source"),
        ({"val_images": ["lena"]}, r"val_images \['lena'\] are not embedded images; choose from astronaut"),
        ({"val_images": []}, "validation split would be empty"),
        ({"val_fraction": 0.2}, "val_fraction splits folder sources"),
        ({"benchmarks": {"train": "x"}}, "taken by the training split"),
        ({"benchmarks": {"a/b": "x"}}, "names a folder"),
        ({"min_hr_size": 0}, "greater than or equal to 1"),
        ({"val_fraction": 1.0}, "less than 1"),
        ({"colour": "rgb"}, "Extra inputs are not permitted"),
    ],
)
def test_config_errors_are_clear(changes: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PrepareConfig(**changes)


def test_config_defaults() -> None:
    cfg = PrepareConfig()
    assert cfg.train_sources == ["embedded"] and cfg.val_images == ["chelsea", "flower"]
    assert cfg.scales == [2, 3, 4] and cfg.benchmarks["Set5"] == "data/benchmarks/Set5/HR"
    assert PrepareConfig(scales=[4, 2]).scales == [2, 4]


def test_folder_pairs_are_prepared_like_benchmarks_and_can_be_thinned(tmp_path: Path) -> None:
    from edgesr.data.photo_sets import folder_pairs

    rng = np.random.default_rng(0)
    images = {f"p{i}": rng.integers(0, 256, (21 + i, 30, 3), dtype=np.uint8) for i in range(5)}
    for name, image in images.items():
        save_png(tmp_path / f"{name}.png", image)
    pairs = folder_pairs(tmp_path, 2)
    assert [name for name, _, _ in pairs] == list(images)
    for name, lr, hr in pairs:  # mod-crop, then MATLAB bicubic (the prepare stage's recipe)
        assert np.array_equal(hr, modcrop(images[name], 2)) and np.array_equal(lr, imresize(hr, 0.5))
    # a limit keeps that many, evenly spaced in sorted order
    assert [name for name, _, _ in folder_pairs(tmp_path, 2, limit=3)] == ["p0", "p2", "p4"]
