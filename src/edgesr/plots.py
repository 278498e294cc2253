"""Pictures a person would rather look at than read: training curves, PSNR vs Mult-Adds, sample crops.

Every function writes one PNG atomically and returns its path; callers log it to MLflow and declare
it to DVC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from edgesr.architectures import FGNASArchitecture  # noqa: E402
from edgesr.files import atomic_write  # noqa: E402

__all__ = [
    "save_architecture",
    "save_compose_curve",
    "save_int8_drop",
    "save_latency_bars",
    "save_psnr_vs_mult_adds",
    "save_routing_map",
    "save_search_curves",
    "save_side_by_side",
    "save_training_curves",
    "save_version_comparison",
]


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


def save_psnr_vs_mult_adds(rows: Sequence[Mapping[str, Any]], benchmark: str, path: Path) -> Path:
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


def save_search_curves(history: Sequence[Mapping[str, float | None]], title: str, path: Path) -> Path:
    """FGNAS search: the resource cost against its (ramped) target, lambda, and validation PSNR-Y."""
    fig, (ax_cost, ax_lambda, ax_psnr) = plt.subplots(1, 3, figsize=(13, 3.6))
    logged = [h for h in history if h.get("search/cost") is not None]
    its = [h["iteration"] for h in logged]
    ax_cost.plot(its, [h["search/cost"] for h in logged], label="cost (hard gates)")
    if any(h.get("search/target") is not None for h in logged):
        ax_cost.plot(its, [h.get("search/target") for h in logged], ls="--", label="target")
    ax_cost.set(xlabel="iteration", ylabel="cost (Mult-Adds or ms)", title=title)
    ax_cost.legend(fontsize=8)
    ax_lambda.plot(its, [h["search/lambda"] for h in logged])
    ax_lambda.set(xlabel="iteration", ylabel="lambda", yscale="log", title="lambda")
    val = [(h["iteration"], h["val_psnr"]) for h in history if h.get("val_psnr") is not None]
    if val:
        ax_psnr.plot(*zip(*val, strict=True), marker="o", ms=3)
    ax_psnr.set(xlabel="iteration", ylabel="validation PSNR-Y (dB)", title="supernet, hard gates")
    for ax in (ax_cost, ax_lambda, ax_psnr):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def save_architecture(arch: FGNASArchitecture, title: str, path: Path) -> Path:
    """A searched FGNAS architecture in the style of paper 001, Fig. 4.

    Top: channels per layer (head, then per block its 1x1, Mult and residual maps, then after-body),
    with the alive trunk width as a line. Bottom: the activation mix of each block's Mult channels
    (how many channels keep each combination of ReLU / PReLU / tanh).
    """
    fig, (ax_ch, ax_act) = plt.subplots(2, 1, figsize=(max(7.0, 1.1 * len(arch.blocks) + 3), 6.4), sharex=True)
    positions = np.arange(len(arch.blocks))
    width = 0.27
    pointwise = [len(b.pointwise) if b.pointwise is not None else 0 for b in arch.blocks]
    ax_ch.bar(positions - width, pointwise, width, label="1x1 conv")
    ax_ch.bar(positions, [len(b.mult_channels()) for b in arch.blocks], width, label="Mult (3x3)")
    ax_ch.bar(positions + width, [len(b.residual) for b in arch.blocks], width, label="residual (3x3)")
    trunk = [len(arch.trunk_channels(i + 1)) for i in range(len(arch.blocks))]
    ax_ch.plot(positions, trunk, color="black", marker="o", ms=3, label="trunk alive after block")
    ends = f"head {len(arch.head)}, after-body {len(arch.after_body)}"
    ax_ch.axhline(len(arch.head), color="grey", ls=":", label=ends)
    ax_ch.set(ylabel="channels", ylim=(0, arch.widest_map * 1.08), title=title)
    ax_ch.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: never over a bar
    combos: dict[str, list[int]] = {}
    for index, block in enumerate(arch.blocks):
        for channel in block.mult_channels():
            key = "+".join(a for a in arch.activations if channel in set(block.mult.get(a, [])))
            combos.setdefault(key, [0] * len(arch.blocks))[index] += 1
    bottom = np.zeros(len(arch.blocks))
    for key, counts in sorted(combos.items()):
        ax_act.bar(positions, counts, 0.6, bottom=bottom, label=key)
        bottom += counts
    ax_act.set(ylabel="Mult channels", xlabel="block")
    ax_act.set_xticks(positions, [str(i) for i in positions])
    ax_act.legend(fontsize=7, title="activation mix", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    for ax in (ax_ch, ax_act):
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def save_int8_drop(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
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


def save_compose_curve(rows: Sequence[Mapping[str, Any]], benchmark: str, path: Path) -> Path:
    """PSNR-Y against Mult-Adds (% of the largest branch on the whole frame) of the composed model on ``benchmark``:
    each branch alone, ClassSR's classifier, ARM's edge router and its ``eta`` sweep (a line, ``row["eta"]``)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    sweep = sorted((r for r in rows if r.get("eta") is not None), key=lambda r: float(r["mult_adds_pct"]))
    if sweep:
        ax.plot(
            [r["mult_adds_pct"] for r in sweep],
            [r["psnr"] for r in sweep],
            "-o",
            ms=3,
            color="tab:green",
            label="edge router, eta sweep",
        )
    markers = {"branch": ("s", "tab:blue"), "classifier": ("*", "tab:red"), "edge": ("D", "tab:green")}
    for row in rows:
        if row.get("eta") is not None:
            continue
        marker, color = markers[str(row["kind"])]
        x, y = float(row["mult_adds_pct"]), float(row["psnr"])
        ax.scatter(x, y, marker=marker, color=color, s=60 if marker == "*" else 30)
        ax.annotate(str(row["routing"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlabel="Mult-Adds, % of the largest branch on the whole frame", ylabel=f"PSNR-Y on {benchmark} (dB)")
    ax.set_title(f"Composed model: quality vs cost ({benchmark})")
    ax.grid(alpha=0.3)
    if sweep:
        ax.legend(fontsize=8)
    return _save(fig, path)


def save_routing_map(
    lr: np.ndarray,
    routes: np.ndarray,
    tops: np.ndarray,
    lefts: np.ndarray,
    patch: int,
    names: Sequence[str],
    title: str,
    path: Path,
) -> Path:
    """The LR image (uint8 HWC) with every patch tinted by its branch (later patches over earlier ones)."""
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, len(names)))[:, :3]
    tint = np.zeros(lr.shape, dtype=np.float64)
    for branch, top, left in zip(routes, tops, lefts, strict=True):
        tint[top : top + patch, left : left + patch] = colours[branch]
    fig, ax = plt.subplots(figsize=(7.0, 7.0 * lr.shape[0] / lr.shape[1] + 0.6))
    ax.imshow(0.55 * lr / 255.0 + 0.45 * tint)
    for top in np.unique(tops):
        ax.axhline(top - 0.5, color="white", lw=0.3)
    for left in np.unique(lefts):
        ax.axvline(left - 0.5, color="white", lw=0.3)
    counts = np.bincount(routes, minlength=len(names))
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[i]) for i in range(len(names))]
    ax.legend(handles, [f"{n} ({c})" for n, c in zip(names, counts, strict=True)], fontsize=8, loc="lower right")
    ax.set(title=title, xticks=[], yticks=[])
    return _save(fig, path)


def save_version_comparison(
    versions: Mapping[str, Mapping[str, float]], runtimes: Mapping[str, str], title: str, path: Path
) -> Path:
    """int8 PSNR-Y against tile latency per device profile, one point per registered version and set.

    ``versions`` maps a version number to its numeric tags (``int8_psnr.<runtime>.<set>``,
    ``latency_ms.<profile>``); ``runtimes`` maps each device profile to its runtime. One panel per
    profile, with the PSNR of that profile's runtime.
    """
    fig, axes = plt.subplots(1, len(runtimes), figsize=(5.2 * len(runtimes), 4.0), squeeze=False)
    for ax, (profile, runtime) in zip(axes[0], runtimes.items(), strict=True):
        prefix, latency = f"int8_psnr.{runtime}.", f"latency_ms.{profile}"
        sets = sorted({k[len(prefix) :] for tags in versions.values() for k in tags if k.startswith(prefix)})
        for marker, set_name in zip("osD^vP*X", sets, strict=False):
            points = [
                (tags[latency], tags[prefix + set_name], version)
                for version, tags in versions.items()
                if latency in tags and prefix + set_name in tags
            ]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker, ls="none", label=set_name)
            for x, y, version in points:
                ax.annotate(f"v{version}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set(xlabel=f"ms per tile on {profile}", ylabel=f"int8 PSNR-Y, {runtime} (dB)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(fig, path)
