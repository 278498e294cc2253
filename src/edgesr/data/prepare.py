"""Build the prepared dataset: matching LR/HR PNG pairs per scale, a train/val split and benchmark sets.

LR images follow the benchmark convention (DESIGN.md, "Data conventions"; BasicSR): for each scale s,
HR is mod-cropped to a multiple of s and ``LR = imresize(HR, 1/s)`` with MATLAB's antialiased bicubic
(:func:`edgesr.data.imresize.imresize`) on uint8 RGB. Because the mod-crop depends on s, the HR image is
stored once per scale next to its LR image, so every pair matches exactly (HR size = s x LR size).

Layout of ``out_dir``::

    manifest.json                          what is here (see below)
    train/X{s}/HR/<name>.png               training pairs, one folder pair per scale
    train/X{s}/LR/<name>.png
    train/X{s}/pairs.json                  the pairs of this set and scale (the manifest's entry for them)
    val/X{s}/{HR,LR}/<name>.png, pairs.json    held-out validation pairs
    benchmarks/<set>/X{s}/{HR,LR}/<name>.png, pairs.json   e.g. benchmarks/Set5/X2/LR/baby.png

``manifest.json`` holds the configuration, per set (``train``, ``val`` and each benchmark) and scale
the image count and every file's relative path, width, height and sha256, the benchmark folders that
were missing, and every skipped image with the reason. It contains no time stamps or absolute paths,
so preparing the same inputs twice gives the same manifest.

Each ``<set>/X{s}`` folder is self-contained (its ``pairs.json``): :func:`load_pairs` reads nothing else,
so a stage that trains on ``train/X2`` and ``val/X2`` depends on those two folders only, and adding a
benchmark set or a scale changes neither (their :func:`data_hash` included).

Nothing is half-written: everything goes into a temporary sibling folder, which replaces ``out_dir``
only once complete. Training/validation images whose shorter side (after mod-crop) is below
``min_hr_size`` are skipped with a message; benchmark images are always kept, as published scores
use every image.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edgesr.data.images import load_rgb8, save_png
from edgesr.data.imresize import imresize, modcrop
from edgesr.data.settings import EMBEDDED, PrepareConfig
from edgesr.data.sources import (
    EMBEDDED_NAMES,
    EmptySourceError,
    SkippedImage,
    embedded_images,
    evenly_spaced,
    folder_images,
    image_files,
    image_names,
)
from edgesr.errors import MissingInputError, UsageError
from edgesr.files import write_json

__all__ = ["MANIFEST_NAME", "available_benchmarks", "data_hash", "load_pairs", "pairs_dir", "prepare", "read_manifest"]

MANIFEST_NAME = "manifest.json"
PAIRS_NAME = "pairs.json"
_MANIFEST_FORMAT = 1
_TRAIN, _VAL = "train", "val"
# zlib level 1: encoding dominates prepare's run time and level 6 is ~3x slower for ~20% smaller files.
_PNG_COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class _Source:
    """One input of the run: where its images come from and which set each of them joins."""

    label: str  # as written in the config (never an absolute path, so manifests are portable)
    count: int
    images: Callable[[list[SkippedImage]], Iterator[tuple[str, np.ndarray]]]
    set_of: Callable[[str], str]  # image name -> "train", "val" or the benchmark name


def _folder_reader(folder: Path) -> Callable[[list[SkippedImage]], Iterator[tuple[str, np.ndarray]]]:
    return lambda skipped: folder_images(folder, skipped)


def _one_set(set_name: str) -> Callable[[str], str]:
    return lambda _name: set_name


def _resolve(path: str, root: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else root / candidate


def _evenly_spaced(names: list[str], fraction: float) -> set[str]:
    """``fraction`` of ``names`` (sorted), spread over the whole list; at least one, never all."""
    if fraction == 0 or len(names) < 2:
        return set()
    return set(evenly_spaced(names, min(len(names) - 1, max(1, round(fraction * len(names))))))


def _train_sources(cfg: PrepareConfig, root: Path) -> list[_Source]:
    def split_by_name(held_out: set[str]) -> Callable[[str], str]:
        return lambda name: _VAL if name in held_out else _TRAIN

    sources, found = [], set()
    for label in cfg.train_sources:
        if label == EMBEDDED:
            names = list(EMBEDDED_NAMES)
            sources.append(
                _Source(label, len(names), lambda _skipped: iter(embedded_images()), split_by_name(set(cfg.val_images)))
            )
        else:
            folder = _resolve(label, root)
            files = image_files(folder)  # EmptySourceError names the folder
            names = image_names(files)
            held_out = set(cfg.val_images) | _evenly_spaced(names, cfg.val_fraction)
            sources.append(
                _Source(
                    label,
                    len(files),
                    _folder_reader(folder),
                    split_by_name(held_out),
                )
            )
        found.update(names)
    missing = [name for name in cfg.val_images if name not in found]
    if missing:
        raise UsageError(
            f"val_images {missing} are not among the training sources {cfg.train_sources}; name images "
            "those sources contain (file name without extension), or use val_fraction for folders"
        )
    return sources


def _benchmark_sources(cfg: PrepareConfig, root: Path, missing: dict[str, str]) -> list[_Source]:
    sources = []
    for name, label in cfg.benchmarks.items():
        folder = _resolve(label, root)
        if not folder.is_dir():
            # A fresh checkout has no ../shared data: evaluate on what exists instead of failing.
            tqdm.write(f"prepare: benchmark {name} skipped, folder {folder} not found")
            missing[name] = label
            continue
        files = image_files(folder)
        sources.append(
            _Source(
                label,
                len(files),
                _folder_reader(folder),
                _one_set(name),
            )
        )
    return sources


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_pair(staging: Path, set_dir: str, name: str, image: np.ndarray, scale: int) -> dict[str, Any]:
    hr = modcrop(image, scale)
    lr = imresize(hr, 1 / scale)
    entry: dict[str, Any] = {"name": name}
    for kind, array in (("hr", hr), ("lr", lr)):
        relative = f"{set_dir}/X{scale}/{kind.upper()}/{name}.png"
        save_png(staging / relative, array, compress_level=_PNG_COMPRESS_LEVEL)
        entry[kind] = {
            "path": relative,
            "width": int(array.shape[1]),
            "height": int(array.shape[0]),
            "sha256": _sha256(staging / relative),
        }
    return entry


def _unique(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``... if another source already produced it."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}_{number}"
    taken.add(candidate)
    return candidate


def _new_set(kind: str, sources: list[str], set_dir: str, scales: Sequence[int]) -> dict[str, Any]:
    return {
        "kind": kind,
        "sources": sources,
        "dir": set_dir,
        "scales": {f"x{s}": {"count": 0, "files": []} for s in scales},
    }


def _build(cfg: PrepareConfig, root: Path, staging: Path) -> dict[str, Any]:
    missing: dict[str, str] = {}
    train_sources = _train_sources(cfg, root)
    benchmark_sources = _benchmark_sources(cfg, root, missing)
    sets = {
        _TRAIN: _new_set("train", list(cfg.train_sources), _TRAIN, cfg.scales),
        _VAL: _new_set("val", list(cfg.train_sources), _VAL, cfg.scales),
    }
    for name, label in cfg.benchmarks.items():
        if name not in missing:
            sets[name] = _new_set("benchmark", [label], f"benchmarks/{name}", cfg.scales)
    skipped: list[dict[str, str]] = []
    taken: set[str] = set()
    with tqdm(total=sum(s.count for s in train_sources + benchmark_sources), desc="prepare", unit="img") as bar:
        for source in train_sources + benchmark_sources:
            unreadable: list[SkippedImage] = []
            for raw_name, image in source.images(unreadable):
                bar.update()
                set_name = source.set_of(raw_name)
                is_benchmark = sets[set_name]["kind"] == "benchmark"
                shorter = min(min(modcrop(image, s).shape[:2]) for s in cfg.scales)
                if not is_benchmark and shorter < cfg.min_hr_size:
                    reason = f"shorter side {shorter} px after mod-crop is below min_hr_size {cfg.min_hr_size}"
                    tqdm.write(f"prepare: skipping {raw_name} from {source.label}: {reason}")
                    skipped.append({"source": source.label, "image": raw_name, "reason": reason})
                    continue
                name = raw_name if is_benchmark else _unique(raw_name, taken)
                for scale in cfg.scales:
                    per_scale = sets[set_name]["scales"][f"x{scale}"]
                    per_scale["files"].append(
                        {**_write_pair(staging, sets[set_name]["dir"], name, image, scale), "source": source.label}
                    )
                    per_scale["count"] += 1
            skipped += [{"source": source.label, "image": s.name, "reason": s.reason} for s in unreadable]
            bar.update(len(unreadable))
    for data in sets.values():
        for scale in cfg.scales:
            write_json(staging / data["dir"] / f"X{scale}" / PAIRS_NAME, data["scales"][f"x{scale}"])
    for split in (_TRAIN, _VAL):
        if sets[split]["scales"][f"x{cfg.scales[0]}"]["count"] == 0:
            raise EmptySourceError(
                f"the {split} split is empty after skipping {len(skipped)} image(s) "
                f"({'; '.join(s['image'] + ': ' + s['reason'] for s in skipped) or 'none'}); "
                f"check train_sources {cfg.train_sources}, val_images and min_hr_size"
            )
    return {
        "format": _MANIFEST_FORMAT,
        "layout": "<dir>/X<s>/{HR,LR}/<name>.png; HR mod-cropped to s, LR = MATLAB imresize(HR, 1/s)",
        "config": cfg.model_dump(mode="json"),
        "counts": {name: {key: entry["count"] for key, entry in data["scales"].items()} for name, data in sets.items()},
        "sets": sets,
        "missing_benchmarks": missing,
        "skipped": skipped,
    }


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Put the finished ``staging`` folder at ``out_dir``, replacing an older one (two renames)."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", suffix=".tmp", dir=out_dir.parent))
    retired.rmdir()  # only the unique name is needed; rename needs a free target
    os.rename(out_dir, retired)
    try:
        os.rename(staging, out_dir)
    except BaseException:
        os.rename(retired, out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def prepare(cfg: PrepareConfig, out_dir: Path, root: Path = Path(".")) -> dict[str, Any]:
    """Build the prepared dataset of ``cfg`` at ``out_dir`` (layout in the module docstring).

    Relative source and benchmark paths are resolved against ``root``. Returns the manifest, which is
    also written to ``out_dir/manifest.json``. Raises :class:`EmptySourceError` for a training source
    (or an existing benchmark folder) with no images, or a split left empty.
    """
    out_dir, root = Path(out_dir), Path(root)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes an owner-only folder; this one becomes out_dir
        manifest = _build(cfg, root, staging)
        write_json(staging / MANIFEST_NAME, manifest)
        _swap_in(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def read_manifest(prepared_dir: Path) -> dict[str, Any]:
    """The manifest of a prepared dataset; :class:`MissingInputError` says how to make one."""
    path = Path(prepared_dir) / MANIFEST_NAME
    if not path.is_file():
        raise MissingInputError(f"{path} not found: prepare the data first (`edgesr prepare` or `dvc repro prepare`)")
    return json.loads(path.read_text())


def available_benchmarks(prepared_dir: Path) -> list[str]:
    """Names of the benchmark sets in a prepared dataset, in configuration order (e.g. Set5, Set14)."""
    return [name for name, data in read_manifest(prepared_dir)["sets"].items() if data["kind"] == "benchmark"]


def pairs_dir(prepared_dir: Path, split_or_benchmark: str, scale: int) -> Path:
    """The self-contained folder of one set at one scale: ``train/X2``, ``val/X2``, ``benchmarks/Set5/X2``."""
    set_dir = split_or_benchmark if split_or_benchmark in (_TRAIN, _VAL) else f"benchmarks/{split_or_benchmark}"
    return Path(prepared_dir) / set_dir / f"X{scale}"


def _pairs_index(prepared_dir: Path, split_or_benchmark: str, scale: int) -> Path:
    """``pairs.json`` of one set and scale; a missing one is explained from the manifest."""
    path = pairs_dir(prepared_dir, split_or_benchmark, scale) / PAIRS_NAME
    if path.is_file():
        return path
    sets = read_manifest(prepared_dir)["sets"]
    if split_or_benchmark not in sets:
        raise UsageError(f"{prepared_dir} has no set {split_or_benchmark!r}; it has {', '.join(sets)}")
    prepared_scales = ", ".join(sets[split_or_benchmark]["scales"])
    raise UsageError(
        f"{prepared_dir} has no x{scale} pairs for {split_or_benchmark}; prepared scales: {prepared_scales} "
        f"(add {scale} to prepare.scales, or rerun `dvc repro prepare` if {path} was removed)"
    )


def data_hash(prepared_dir: Path, sets: tuple[str, ...] | None = None, scale: int | None = None) -> str:
    """sha256 (16 hex) of what a stage read, the MLflow ``data_hash`` tag and the checkpoints' data identity:
    the ``pairs.json`` of ``sets`` at ``scale`` (a training run: ``("train", "val")``), or the whole manifest."""
    if sets is None:
        files = [Path(prepared_dir) / MANIFEST_NAME]
        if not files[0].is_file():
            raise FileNotFoundError(f"{files[0]} not found: run the prepare stage first (`dvc repro prepare`)")
    else:
        if scale is None:
            raise ValueError("data_hash of named sets needs their scale")
        files = [_pairs_index(prepared_dir, name, scale) for name in sets]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_pairs(prepared_dir: Path, split_or_benchmark: str, scale: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, LR, HR) uint8 (H, W, 3) RGB pairs of ``"train"``, ``"val"`` or a benchmark (``"Set5"``), read
    from that set's folder at ``scale`` alone (:func:`pairs_dir`)."""
    prepared_dir = Path(prepared_dir)
    index = json.loads(_pairs_index(prepared_dir, split_or_benchmark, scale).read_text())
    pairs = []
    for entry in index["files"]:
        lr, hr = load_rgb8(prepared_dir / entry["lr"]["path"]), load_rgb8(prepared_dir / entry["hr"]["path"])
        if hr.shape != (lr.shape[0] * scale, lr.shape[1] * scale, 3):
            raise ValueError(f"{prepared_dir}: {entry['name']} HR {hr.shape} is not {scale} x LR {lr.shape}")
        pairs.append((entry["name"], lr, hr))
    return pairs
