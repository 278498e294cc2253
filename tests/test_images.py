"""Reading every kind of image file as RGB8 with the right values, and atomic PNG writing."""

from __future__ import annotations

import pickle
import stat
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from edgesr.data.images import UnreadableImageError, as_image, as_input, load_rgb8, save_png

_SAMPLES_16 = np.array([0, 128, 129, 255, 32767, 32896, 40000, 65535], dtype=np.uint16)
# round(v * 255 / 65535), worked out by hand: 128 -> 0.498, 129 -> 0.502, 32767 -> 127.498, 32896 = 128 * 257
_EXPECTED_8 = np.array([0, 0, 1, 1, 127, 128, 156, 255], dtype=np.uint8)


def _paeth(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _write_png16(path: Path, samples: np.ndarray) -> None:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA by channel count) whose rows cycle through all five
    PNG filters, so the decoder's unfiltering is exercised (Pillow cannot write 16-bit colour)."""
    height, width, channels = samples.shape
    bpp = 2 * channels
    rows = [np.frombuffer(samples[y].astype(">u2").tobytes(), np.uint8).astype(np.int64) for y in range(height)]
    body = b""
    for y, row in enumerate(rows):
        kind = y % 5
        up = rows[y - 1] if y else np.zeros_like(row)
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        up_left = np.concatenate([np.zeros(bpp, np.int64), up[:-bpp]])
        predictor = [0, left, up, (left + up) // 2, _paeth(left, up, up_left)][kind]
        body += bytes([kind]) + ((row - predictor) % 256).astype(np.uint8).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b"")
    )


def _to8(values: np.ndarray) -> np.ndarray:
    return np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)


def test_rgb_png_round_trips(tmp_path: Path) -> None:
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    save_png(tmp_path / "a.png", image)
    loaded = load_rgb8(tmp_path / "a.png")
    assert loaded.dtype == np.uint8 and loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, image)


def test_grey_is_replicated(tmp_path: Path) -> None:
    grey = np.array([[0, 17], [200, 255]], dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(load_rgb8(tmp_path / "g.png"), np.stack([grey] * 3, axis=2))


def test_bilevel_becomes_black_and_white(tmp_path: Path) -> None:
    Image.fromarray(np.array([[True, False]])).save(tmp_path / "b.png")
    np.testing.assert_array_equal(load_rgb8(tmp_path / "b.png")[0], [[255, 255, 255], [0, 0, 0]])


def test_alpha_is_dropped_not_composited(tmp_path: Path) -> None:
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_rgb8(tmp_path / "rgba.png"), rgba[..., :3])
    grey_alpha = np.array([[[90, 0], [180, 255]]], dtype=np.uint8)
    Image.fromarray(grey_alpha, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_rgb8(tmp_path / "la.png")[0], [[90] * 3, [180] * 3])


@pytest.mark.parametrize("transparent", [False, True])
def test_palette_is_expanded(tmp_path: Path, transparent: bool) -> None:
    image = Image.fromarray(np.array([[0, 1], [2, 1]], dtype=np.uint8), "P")
    image.putpalette([255, 0, 0, 0, 128, 0, 1, 2, 3] + [0] * (256 * 3 - 9))
    image.save(tmp_path / "p.png", **({"transparency": 1} if transparent else {}))
    with Image.open(tmp_path / "p.png") as check:
        assert check.mode == "P"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow warns when a transparent palette goes straight to RGB
        loaded = load_rgb8(tmp_path / "p.png")
    np.testing.assert_array_equal(loaded, [[[255, 0, 0], [0, 128, 0]], [[1, 2, 3], [0, 128, 0]]])


def test_16bit_grey_png_is_rounded_to_8bit(tmp_path: Path) -> None:
    Image.fromarray(_SAMPLES_16.reshape(2, 4)).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as check:
        assert check.mode.startswith("I;16")
    loaded = load_rgb8(tmp_path / "g16.png")
    np.testing.assert_array_equal(loaded[..., 0].ravel(), _EXPECTED_8)
    np.testing.assert_array_equal(loaded[..., 0], loaded[..., 2])


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16bit_png_keeps_the_low_byte(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(channels)
    samples = rng.integers(0, 65536, (11, 13, channels), dtype=np.uint16)
    samples[0, : len(_SAMPLES_16), 0] = _SAMPLES_16
    _write_png16(tmp_path / "c16.png", samples)
    loaded = load_rgb8(tmp_path / "c16.png")
    expected = _to8(samples[..., :3]) if channels >= 3 else np.repeat(_to8(samples[..., :1]), 3, axis=2)
    np.testing.assert_array_equal(loaded, expected)
    np.testing.assert_array_equal(loaded[0, : len(_SAMPLES_16), 0], _EXPECTED_8)


def test_16bit_rgb_tiff_is_rounded(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    samples = np.random.default_rng(3).integers(0, 65536, (9, 10, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "c16.tif", samples, photometric="rgb", compression="zlib")
    np.testing.assert_array_equal(load_rgb8(tmp_path / "c16.tif"), _to8(samples))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(tmp_path: Path, orientation: int) -> None:
    image = Image.fromarray(np.random.default_rng(orientation).integers(0, 256, (3, 5, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(tmp_path / "o.png", exif=exif)
    with Image.open(tmp_path / "o.png") as stored:
        upright = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))
    np.testing.assert_array_equal(load_rgb8(tmp_path / "o.png"), upright)


def test_corrupt_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(b"this is not a png")
    with pytest.raises(UnreadableImageError, match=r"broken\.png.*not a recognised image") as info:
        load_rgb8(path)
    assert isinstance(info.value, ValueError)
    assert info.value.path == path and "Re-save" in str(info.value)
    copy = pickle.loads(pickle.dumps(info.value))  # survives DataLoader workers / multiprocessing
    assert str(copy) == str(info.value)


def test_truncated_and_missing_files_are_unreadable(tmp_path: Path) -> None:
    save_png(tmp_path / "whole.png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError, match=r"cut\.png"):
        load_rgb8(tmp_path / "cut.png")
    with pytest.raises(UnreadableImageError, match=r"nothing\.png: file not found"):
        load_rgb8(tmp_path / "nothing.png")


def test_float_images_are_rejected_with_a_reason(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((2, 2), dtype=np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(UnreadableImageError, match="floating-point"):
        load_rgb8(tmp_path / "f.tif")


def test_save_png_is_atomic_and_creates_folders(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "x.png"
    first = np.zeros((4, 4, 3), dtype=np.uint8)
    save_png(target, first)
    second = np.full((2, 3), 9, dtype=np.uint8)
    save_png(target, second, compress_level=1)
    np.testing.assert_array_equal(load_rgb8(target), np.stack([second] * 3, axis=2))
    assert [p.name for p in target.parent.iterdir()] == ["x.png"]  # no temporary files left
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_save_png_rejects_bad_arrays_without_writing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        save_png(tmp_path / "f.png", np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        save_png(tmp_path / "f.png", np.zeros((4, 4, 4), dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_float_conversion_round_trips_and_clamps() -> None:
    image = np.arange(256, dtype=np.uint8).reshape(8, 32, 1).repeat(3, axis=2)
    x = as_input(image)
    assert x.shape == (1, 3, 8, 32) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(as_image(x), image)
    np.testing.assert_array_equal(as_image(np.array([-0.5, 0.5, 1.5]).reshape(1, 3, 1, 1)), [[[0, 128, 255]]])
