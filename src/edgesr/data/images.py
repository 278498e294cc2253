"""Reading any common image file as 8-bit RGB, writing PNGs atomically, and the uint8 <-> float conversion.

Every image enters the pipeline as a uint8 (H, W, 3) RGB array, the form BasicSR's data pipeline and
the MATLAB benchmark scripts use:

- Grey (``L``, ``1``, ``I;16``) is replicated to three channels.
- Alpha (RGBA, grey + alpha, palette with transparency) is dropped, not composited: SR models see the
  stored colour values, and dropping never changes a pixel that is fully opaque.
- Palette (``P``) images are expanded to their palette colours.
- 16-bit images (grey ``I;16``/``I``, 16-bit RGB/RGBA PNG and TIFF) are scaled to 8 bit with rounding,
  ``round(v * 255 / 65535)``. Pillow itself keeps only the high byte of 16-bit colour images, so the
  low byte is decoded separately (same file, the other byte order's raw mode) and recombined.
- The EXIF orientation tag is applied, as OpenCV's ``imread`` (used by BasicSR) does.

A file that cannot be decoded raises :class:`UnreadableImageError`, which names the file and what to
do about it; callers that scan folders report it and skip the file.

Every model and runtime takes float32 ``(1, 3, H, W)`` in [0, 1]: :func:`as_input` and :func:`as_image`
are the one conversion to and from it (BasicSR's ``img2tensor`` / ``tensor2img``: divide by 255; clamp
to [0, 1], multiply by 255 and round), used for training validation, deployment and quantization alike.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from edgesr.errors import UserError
from edgesr.files import atomic_write

__all__ = ["IMAGE_EXTENSIONS", "UnreadableImageError", "as_image", "as_input", "is_image_file", "load_rgb8", "save_png"]

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})

# EXIF orientation tag value -> how to turn the stored pixels upright (same table as PIL's exif_transpose).
_ORIENTATION_FIXES = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
_EXIF_ORIENTATION = 0x0112
# Pillow raw modes of 16-bit colour samples, and the raw mode that reads the other byte of each sample.
# ("N" is native order, which libtiff decodes to.)
_NOT_NATIVE = "B" if sys.byteorder == "little" else "L"
_SWAPPED_16BIT_RAWMODE = {
    f"{base};16{order}": f"{base};16{swapped}"
    for base in ("RGB", "RGBA")
    for order, swapped in (("B", "L"), ("L", "B"), ("N", _NOT_NATIVE))
}
_WIDE_RAWMODES = frozenset(_SWAPPED_16BIT_RAWMODE) | {"LA;16B"}


class UnreadableImageError(UserError, ValueError):
    """An image file that cannot be decoded; the message names the file and the fix."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"cannot read image {self.path}: {reason}. Re-save it as an 8- or 16-bit PNG/JPEG "
            f"(RGB or grey), or remove it from the folder."
        )

    def __reduce__(self) -> tuple[type[UnreadableImageError], tuple[Path, str]]:
        # The default reduce would call __init__ with the formatted message only.
        return (type(self), (self.path, self.reason))


def is_image_file(path: Path) -> bool:
    """True for a visible file whose extension is a recognised image format (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def _to_8bit(values: np.ndarray) -> np.ndarray:
    """16-bit values (any integer dtype, clipped to [0, 65535]) -> uint8 with round(v * 255 / 65535)."""
    wide = np.clip(values.astype(np.int64), 0, 65535)
    # v * 255 / 65535 never lands exactly on .5, so integer floor((v * 255 + 32767) / 65535) rounds it.
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _tile_rawmode(image: ImageFile.ImageFile) -> str | None:
    """The raw mode all of an unloaded image's tiles decode from, or None if they differ."""
    modes = {tile.args if isinstance(tile.args, str) else (tile.args or (None,))[0] for tile in image.tile}
    return modes.pop() if len(modes) == 1 else None


def _redecode(path: Path, rawmode: str) -> np.ndarray:
    """Decode ``path`` again with another raw mode of the same bit layout (so PNG filters still apply)."""
    with Image.open(path) as image:
        image.tile = [
            tile._replace(args=rawmode if isinstance(tile.args, str) else (rawmode, *(tile.args or (None,))[1:]))
            for tile in image.tile
        ]
        return np.asarray(image)


def _widen_16bit(path: Path, rawmode: str, high: np.ndarray) -> np.ndarray:
    """Full 16-bit (H, W, 3) values of a colour or grey+alpha image that Pillow decoded to 8 bits.

    Pillow keeps only the high byte of each 16-bit sample. Decoding with the opposite byte order's raw
    mode picks the low bytes instead; grey+alpha (``LA;16B``) has the byte layout of 8-bit RGBA.
    """
    if rawmode == "LA;16B":
        raw = _redecode(path, "RGBA").astype(np.uint16)
        return np.repeat((raw[..., 0] * 256 + raw[..., 1])[..., None], 3, axis=2)
    low = _redecode(path, _SWAPPED_16BIT_RAWMODE[rawmode])
    return high[..., :3].astype(np.uint16) * 256 + low[..., :3]


def _decode(image: Image.Image, path: Path, rawmode: str | None) -> np.ndarray:
    mode = image.mode
    if mode in ("RGB", "RGBA") and rawmode in _WIDE_RAWMODES:
        try:
            return _to_8bit(_widen_16bit(path, rawmode, np.asarray(image)))
        except (OSError, ValueError) as error:
            warnings.warn(f"{path}: 16-bit colour kept at its high byte ({error})", stacklevel=4)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = _to_8bit(np.asarray(image))
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        raise UnreadableImageError(path, "32-bit floating-point images have no fixed value range")
    if mode in ("1", "L", "LA", "La"):
        grey = np.asarray(image.convert("L") if mode == "1" else image.getchannel(0))
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("P", "PA") and ("transparency" in image.info or mode == "PA"):
        # Converting straight to RGB would warn about transparency; go through RGBA and drop alpha.
        return np.asarray(image.convert("RGBA"))[..., :3]
    if mode == "RGBA":
        return np.asarray(image)[..., :3]
    try:
        return np.asarray(image.convert("RGB"))
    except ValueError as error:
        raise UnreadableImageError(path, f"colour mode {mode} cannot be converted to RGB ({error})") from None


def _apply_orientation(array: np.ndarray, image: Image.Image) -> np.ndarray:
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, ValueError, SyntaxError):
        return array  # unreadable EXIF: keep the stored orientation rather than reject the pixels
    fix = _ORIENTATION_FIXES.get(orientation)
    return array if fix is None else fix(array)


def load_rgb8(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as a C-contiguous uint8 (H, W, 3) RGB array (conversions in the module doc).

    Raises :class:`UnreadableImageError` when the file is missing, truncated, not an image, or in a
    format with no meaningful 8-bit RGB form.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            rawmode = _tile_rawmode(image)  # Pillow forgets the tiles once loaded
            image.load()
            array = _apply_orientation(_decode(image, path, rawmode), image)
    except UnreadableImageError:
        raise
    except FileNotFoundError:
        raise UnreadableImageError(path, "file not found") from None
    except UnidentifiedImageError:
        raise UnreadableImageError(path, "not a recognised image format (corrupt or wrong extension)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(path, f"decoding failed ({error})") from None
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) == 0:
        raise UnreadableImageError(path, f"decoded to an unusable array of shape {array.shape}")
    return np.ascontiguousarray(array, dtype=np.uint8)


def save_png(path: str | os.PathLike[str], array: np.ndarray, compress_level: int = 6) -> None:
    """Write a uint8 (H, W, 3) or (H, W) array as PNG, atomically: a temporary file in the same
    folder is renamed over ``path``, so a reader never sees a half-written file. Creates parents.

    ``compress_level`` is zlib's 0-9 (6 is Pillow's default; 1 is about 3x faster, files ~20% larger).
    """
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"save_png takes uint8 (H, W, 3) or (H, W) arrays, got {array.dtype} {array.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(array))
    atomic_write(path, lambda temporary: image.save(temporary, format="PNG", compress_level=compress_level))


def as_input(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> float32 (1, 3, H, W) in [0, 1], the models' input."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)


def as_image(output: np.ndarray) -> np.ndarray:
    """float (1, 3, H, W) -> uint8 (H, W, 3): clamp to [0, 1], x255, round half to even."""
    return np.rint(np.clip(output[0], 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0)
