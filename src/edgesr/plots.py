"""Pictures a person would rather look at than read: training curves, PSNR vs Mult-Adds, sample crops.

Every function writes one PNG atomically and returns its path; callers log it to MLflow and declare
it to DVC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from edgesr.files import atomic_write  # noqa: E402

__all__ = ["save_int8_drop", "save_latency_bars", "save_training_curves", "save_psnr_vs_mult_adds", "save_side_by_side"]


def _save(fig: plt.Figure, path: Path) -> Path:
    try:
        return atomic_write(path, lambda temporary: fig.savefig(temporary, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def save_training_curves(history: Sequence[Mapping[str, float | None]], title: str, path: Path) -> Path:
    """Training loss (log scale) and validation PSNR-Y against iteration."""
    fig, (ax_loss, ax_psnr) = plt.subplots(1, 2, figsize=(10, 3.6))
    its = [h["iteration"] for h in history if h.get("loss") is not None]
    ax_loss.plot(its, [h["loss"] for h in history if h.get("loss") is not None], lw=1)
    ax_loss.set(xlabel="iteration", ylabel="training loss", yscale="log", title=title)
    val = [(h["iteration"], h["val_psnr"]) for h in history if h.get("val_psnr") is not None]
    if val:
        ax_psnr.plot(*zip(*val, strict=True), marker="o", ms=3)
    ax_psnr.set(xlabel="iteration", ylabel="validation PSNR-Y (dB)", title="validation")
    for ax in (ax_loss, ax_psnr):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def save_psnr_vs_mult_adds(rows: Sequence[Mapping[str, object]], benchmark: str, path: Path) -> Path:
    """Scatter of PSNR-Y (``row["psnr"]``, measured on ``benchmark``) against Mult-Adds at 720p (log x)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for row in rows:
        x, y = float(row["mult_adds_g"]), float(row["psnr"])
        ax.scatter(max(x, 1e-3), y, s=30)
        ax.annotate(str(row["model"]), (max(x, 1e-3), y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xscale="log", xlabel="Mult-Adds at 1280x720 output (G)", ylabel=f"PSNR-Y on {benchmark} (dB)")
    ax.set_title(f"Quality vs cost ({benchmark})")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def save_side_by_side(bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray, crop: int, title: str, path: Path) -> Path:
    """Centre crops of LR-bicubic / SR / HR (uint8 HWC, same size) next to each other."""
    h, w = hr.shape[:2]
    size = min(crop, h, w)
    top, left = (h - size) // 2, (w - size) // 2
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    for ax, image, label in zip(axes, (bicubic, sr, hr), ("bicubic", "SR", "HR"), strict=True):
        ax.imshow(image[top : top + size, left : left + size], interpolation="nearest")
        ax.set_title(label)
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path)


def save_int8_drop(rows: Sequence[Mapping[str, object]], path: Path) -> Path:
    """Horizontal bars of the PSNR-Y drop fp32 -> int8 (dB), one per ``row["label"]`` (model / runtime / set)."""
    fig, ax = plt.subplots(figsize=(7.0, 0.3 * len(rows) + 1.2))
    labels = [str(row["label"]) for row in rows]
    drops = [float(row["drop"]) for row in rows]
    ax.barh(labels, drops, color=["tab:red" if d > 0.3 else "tab:blue" for d in drops])
    ax.axvline(0.3, color="grey", ls="--", lw=1, label="0.3 dB (paper 003 Table 2)")
    ax.invert_yaxis()
    ax.set(xlabel="PSNR-Y drop fp32 -> int8 (dB)", title="int8 post-training quantization")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


def save_latency_bars(models: Mapping[str, Mapping[str, float]], title: str, path: Path) -> Path:
    """Grouped bars: per model, the median latency (ms, log scale) of each runtime/precision."""
    names = list(models)
    variants = list(dict.fromkeys(v for runs in models.values() for v in runs))
    width = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 3, 4.2))
    for i, variant in enumerate(variants):
        xs = [j + i * width for j in range(len(names))]
        ax.bar(xs, [models[n].get(variant, np.nan) for n in names], width, label=variant)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names)
    ax.set(yscale="log", ylabel="median latency (ms)", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y", which="both")
    return _save(fig, path)
