"""Stage ``evaluate``: one table of every trained model plus the bicubic reference.

Per model: PSNR-Y / SSIM-Y on every prepared benchmark set (the validation split when there is none),
parameters, Mult-Adds and other ops for a 1280x720 output, and CPU latency of a 640x360 input
(median of repeats, fixed thread count), and a plain-words flag (:mod:`edgesr.comparison`). Writes
``metrics/evaluate.json`` (DVC metric), ``metrics/evaluate.md`` (the table),
``plots/evaluate/psnr_vs_mult_adds.json`` (DVC scatter plot) and its PNG, and logs all of it to MLflow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn
from tqdm import tqdm

from edgesr.artifacts import subnet_name, training_paths
from edgesr.comparison import row_flags
from edgesr.complexity import count_complexity
from edgesr.config import Params, params_hash
from edgesr.data.prepare import available_benchmarks, data_hash, load_pairs
from edgesr.files import write_json, write_text
from edgesr.inference import super_resolve
from edgesr.latency import measure_latency
from edgesr.metrics import psnr_y, ssim_y
from edgesr.models import Bicubic, build_model, default_model_config
from edgesr.plots import save_psnr_vs_mult_adds
from edgesr.tracking import stage_run
from edgesr.train.restore import trained_model

BICUBIC = "bicubic"


def score(model: nn.Module, pairs: list[tuple[str, np.ndarray, np.ndarray]], scale: int) -> tuple[float, float]:
    """Mean PSNR-Y and SSIM-Y (border ``scale``) of ``model`` over (name, LR, HR) pairs."""
    psnrs, ssims = [], []
    for _, lr, hr in pairs:
        sr = super_resolve(model, lr)
        psnrs.append(psnr_y(sr, hr, scale))
        ssims.append(ssim_y(sr, hr, scale))
    return float(np.mean(psnrs)), float(np.mean(ssims))


def _markdown(rows: list[dict], sets: list[str], flags: dict[str, str]) -> str:
    head = ["model", "scale", *(f"{s} PSNR / SSIM" for s in sets), "params", "Mult-Adds 720p (G)", "latency (ms)"]
    head.append("flag")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["model"], f"x{row['scale']}", *(f"{row[f'psnr_{s}']:.2f} / {row[f'ssim_{s}']:.4f}" for s in sets)]
        cells += [f"{row['params']:,}", f"{row['mult_adds_g']:.2f}", f"{row['latency_ms']:.1f}", flags[row["model"]]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def models_to_evaluate(params: Params, root: Path = Path(".")) -> list[tuple[str, int, nn.Module]]:
    """(name, scale, model): bicubic at every scale in play, the zoo at ``scale``, the retrained subnets."""
    subnets = [(size, s) for size in params.search.sizes for s in params.search.retrain.scales]
    scales = sorted({params.scale} | {s for _, s in subnets})
    entries: list[tuple[str, int, Path | None]] = [
        (BICUBIC if s == params.scale else f"{BICUBIC}_x{s}", s, None) for s in scales
    ]
    entries += [(name, params.scale, training_paths(params, "models", name, root).best) for name in params.models]
    for size, s in subnets:
        name = subnet_name(size, s)
        entries.append((name, s, training_paths(params, "retrain", name, root).best))
    return [
        (name, s, build_model(default_model_config(BICUBIC), s) if ckpt is None else trained_model(ckpt, s))
        for name, s, ckpt in entries
    ]


def run(params: Params, root: Path = Path(".")) -> list[dict]:
    """Evaluate bicubic, every model of ``params.models`` and every retrained subnet; returns the rows."""
    prepared = root / params.paths.prepared
    cfg = params.evaluate
    sets = available_benchmarks(prepared) or ["val"]
    models = models_to_evaluate(params, root)
    pairs = {s: {b: load_pairs(prepared, b, s) for b in sets} for s in {scale for _, scale, _ in models}}

    metrics_dir, plots_dir = root / params.paths.metrics, root / params.paths.plots / "evaluate"
    with stage_run(
        "evaluate",
        experiment=params.tracking.experiment,
        params={"evaluate": cfg.model_dump(mode="json"), "scale": params.scale, "models": [m[0] for m in models]},
        params_hash=params_hash(cfg),
        data_hash=data_hash(prepared),
        root=root,
    ) as tracker:
        rows = [
            _evaluate_one(name, model, scale, pairs[scale], params)
            for name, scale, model in tqdm(models, desc="evaluate")
        ]
        write_json(
            metrics_dir / "evaluate.json",
            {row["model"]: {k: v for k, v in row.items() if k != "model"} for row in rows},
        )
        references = {scale: name for name, scale, model in models if isinstance(model, Bicubic)}
        flags = row_flags(rows, sets, references, cfg.seed_noise_db)
        write_text(metrics_dir / "evaluate.md", _markdown(rows, sets, flags))
        plotted = [row for row in rows if row["scale"] == params.scale]
        write_json(plots_dir / "psnr_vs_mult_adds.json", plotted)
        picture = save_psnr_vs_mult_adds(plotted, sets[0], plots_dir / "psnr_vs_mult_adds.png")
        for row in rows:
            tracker.log_metrics(
                {
                    f"{row['model']}/{k}": float(v)
                    for k, v in row.items()
                    if isinstance(v, int | float) and k not in {"scale", "psnr"}
                }
            )
        for path in (metrics_dir / "evaluate.json", metrics_dir / "evaluate.md", picture):
            tracker.log_artifact(path)
    return rows


def _evaluate_one(
    name: str, model: nn.Module, scale: int, pairs: dict[str, list[tuple[str, np.ndarray, np.ndarray]]], params: Params
) -> dict[str, object]:
    """One row of the table: quality per set, complexity at 720p, CPU latency (threads restored)."""
    cfg = params.evaluate
    sets = list(pairs)
    row: dict[str, object] = {"model": name, "scale": scale}
    for s in sets:
        row[f"psnr_{s}"], row[f"ssim_{s}"] = score(model, pairs[s], scale)
    # the plotted axis: the first benchmark set (Set5 when present, else the validation split)
    row.update(benchmark=sets[0], psnr=row[f"psnr_{sets[0]}"])
    complexity = count_complexity(model, scale, cfg.complexity_output_hw)
    row.update(params=complexity.params, mult_adds_g=complexity.mult_adds / 1e9, other_ops_g=complexity.other_ops / 1e9)
    latency = measure_latency(
        model, cfg.latency_input_hw, repeats=cfg.latency_repeats, warmup=cfg.latency_warmup, threads=cfg.latency_threads
    )
    row["latency_ms"] = latency.median_ms
    return row
