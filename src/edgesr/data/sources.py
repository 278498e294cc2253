"""Where images come from: photographs shipped inside installed packages, or a folder of files.

The embedded set lets a fresh checkout train and evaluate with no downloads: eleven photographs
that ship with scikit-image (``skimage.data``) and scikit-learn (``load_sample_images``). Folder
sources read every image file (see :data:`edgesr.data.images.IMAGE_EXTENSIONS`) in sorted order; an
unreadable file is reported by name and skipped, and a source with nothing usable is an error that
names the path.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from edgesr.data.images import IMAGE_EXTENSIONS, UnreadableImageError, is_image_file, load_rgb8
from edgesr.errors import UserError

__all__ = [
    "EMBEDDED_NAMES",
    "EmptySourceError",
    "SkippedImage",
    "embedded_images",
    "evenly_spaced",
    "folder_images",
    "image_files",
    "image_names",
    "report_skipped",
]


class EmptySourceError(UserError, ValueError):
    """An image source (folder) that is missing or holds no usable image."""


class SkippedImage(NamedTuple):
    """An image left out of a source, and why (for reports and manifests)."""

    name: str
    reason: str


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()

    return load


def _motorcycle(side: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return data.stereo_motorcycle()[side]

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


# Stable names (they become file names); loaders are lazy so importing this module stays cheap.
_EMBEDDED: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "motorcycle_left": _motorcycle(0),
    "motorcycle_right": _motorcycle(1),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "retina": _skimage("retina"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}
EMBEDDED_NAMES: tuple[str, ...] = tuple(_EMBEDDED)


def embedded_images() -> list[tuple[str, np.ndarray]]:
    """The 11 photographs shipped with scikit-image and scikit-learn, as (name, uint8 (H, W, 3) RGB)."""
    images = []
    for name, load in _EMBEDDED.items():
        image = np.ascontiguousarray(load(), dtype=np.uint8)
        if image.ndim != 3 or image.shape[2] != 3:
            raise RuntimeError(f"embedded image {name!r} has shape {image.shape}, expected (H, W, 3)")
        images.append((name, image))
    return images


def image_files(folder: Path) -> list[Path]:
    """Sorted image files directly inside ``folder`` (not recursive, hidden files ignored).

    Raises :class:`EmptySourceError` naming the folder if it does not exist or holds no image file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise EmptySourceError(
            f"image source {folder} {what}: expected a folder of images "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}); fix the path in params.yaml"
        )
    files = sorted(path for path in folder.iterdir() if is_image_file(path))
    if not files:
        raise EmptySourceError(
            f"image source {folder} holds no image files: expected files ending in "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))} directly inside it"
        )
    return files


def image_names(files: list[Path]) -> list[str]:
    """Names for ``files``: the stem, or stem + extension where two files share a stem (a.png, a.jpg)."""
    stems = Counter(path.stem for path in files)
    return [path.stem if stems[path.stem] == 1 else f"{path.stem}_{path.suffix.lower()[1:]}" for path in files]


def report_skipped(path: Path, error: UnreadableImageError) -> None:
    """One plain line on stderr for an unreadable image that is left out (printed above any progress bar)."""
    tqdm.write(f"skipped {path}: {error.reason}", file=sys.stderr)


def evenly_spaced(items: list, count: int) -> list:
    """``count`` of ``items``, spread over the whole list in order (the middle of each of ``count`` equal parts)."""
    count = min(count, len(items))
    return [items[int((i + 0.5) * len(items) / count)] for i in range(count)]


def folder_images(
    folder: Path, skipped: list[SkippedImage] | None = None, limit: int | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, uint8 (H, W, 3) RGB) for every image file in ``folder``, in sorted order, or for
    ``limit`` of them evenly spaced in that order.

    Checks the folder before returning (missing or no image files: :class:`EmptySourceError`). An
    unreadable file is reported (:func:`report_skipped`), appended to ``skipped`` and skipped; if every file is
    unreadable, :class:`EmptySourceError` is raised once the files have been tried.
    """
    files = image_files(folder)
    named = list(zip(files, image_names(files), strict=True))
    if limit is not None:
        named = evenly_spaced(named, limit)
    return _read_folder(Path(folder), [f for f, _ in named], [n for _, n in named], skipped)


def _read_folder(
    folder: Path, files: list[Path], names: list[str], skipped: list[SkippedImage] | None
) -> Iterator[tuple[str, np.ndarray]]:
    readable = 0
    for path, name in zip(files, names, strict=True):
        try:
            image = load_rgb8(path)
        except UnreadableImageError as error:
            report_skipped(path, error)
            if skipped is not None:
                skipped.append(SkippedImage(name=path.name, reason=error.reason))
            continue
        readable += 1
        yield name, image
    if readable == 0:
        raise EmptySourceError(f"image source {folder}: none of its {len(files)} image files could be read")
