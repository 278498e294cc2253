"""``edgesr upscale``: a file or a folder of images through a deployed model, tile by tile.

Bad input never loses data (DESIGN.md, data conventions): an unreadable file is named and skipped in
a folder (and is an error for a single file); grey, RGBA, palette and 16-bit images are converted to
RGB8 by :func:`~edgesr.data.images.load_rgb8`; an output that would replace an input, or that cannot be
written, stops before any work; outputs are PNG written atomically.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from edgesr.data.images import UnreadableImageError, load_rgb8, save_png
from edgesr.data.sources import image_files, image_names, report_skipped
from edgesr.deploy.runtimes import Runner
from edgesr.deploy.settings import BorderMode
from edgesr.deploy.tiling import upscale_tiled
from edgesr.errors import MissingInputError, UsageError

__all__ = ["UpscaleJob", "plan", "upscale_all"]


@dataclass(frozen=True)
class UpscaleJob:
    """One input image and the PNG it becomes."""

    source: Path
    target: Path


def _writable_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the output folder {folder} ({err.strerror}); choose another -o") from None
    try:  # a real write: permission bits alone miss read-only and pseudo file systems
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UsageError(f"cannot write into {folder} ({err.strerror}); choose another -o") from None


def plan(source: Path, output: Path | None, scale: int) -> list[UpscaleJob]:
    """The jobs for a file or a folder; ``output`` defaults to ``<stem>_x<s>.png`` / ``<folder>_x<s>/`` beside it.

    A file's ``output`` may be a ``.png`` path or an existing folder. Raises :class:`MissingInputError` for a
    missing source and :class:`UsageError` for an output that is not PNG, would overwrite an input, or
    cannot be written.
    """
    source = Path(source)
    if source.is_dir():
        out_dir = Path(output) if output is not None else source.with_name(f"{source.name}_x{scale}")
        files = image_files(source)
        jobs = [UpscaleJob(f, out_dir / f"{name}.png") for f, name in zip(files, image_names(files), strict=True)]
    elif source.is_file():
        if output is None:
            target = source.with_name(f"{source.stem}_x{scale}.png")
        elif Path(output).is_dir():
            target = Path(output) / f"{source.stem}_x{scale}.png"
        else:
            target = Path(output)
        if target.suffix.lower() != ".png":
            raise UsageError(f"the output {target} must be a .png file (outputs are written as PNG)")
        jobs = [UpscaleJob(source, target)]
    else:
        raise MissingInputError(f"{source} does not exist: give an image file or a folder of images")
    for job in jobs:
        if job.target.resolve() == job.source.resolve():
            raise UsageError(f"the output {job.target} would overwrite the input {job.source}; choose another -o")
    for folder in sorted({job.target.parent for job in jobs}):
        _writable_folder(folder)
    return jobs


def upscale_all(
    jobs: list[UpscaleJob], runner: Runner, scale: int, tile: int, overlap: int, border: BorderMode = "symmetric"
) -> list[UpscaleJob]:
    """Upscale every job (tiled, the image extended by ``overlap`` pixels of ``border``); returns the jobs done.

    In a folder an unreadable file is reported on one line (:func:`~edgesr.data.sources.report_skipped`)
    and skipped; a single unreadable file raises :class:`UnreadableImageError`."""
    done = []
    for job in tqdm(jobs, desc="upscale", unit="image", disable=len(jobs) == 1):
        try:
            lr = load_rgb8(job.source)
        except UnreadableImageError as err:
            if len(jobs) == 1:
                raise
            report_skipped(job.source, err)
            continue
        save_png(job.target, upscale_tiled(runner, lr, scale, tile, overlap, border=border, desc=job.source.name))
        done.append(job)
    return done
