"""Seed spread: the default zoo and the searched S subnet trained with several seeds (not a test).

    .venv/bin/python benchmarks/seeds.py --seeds 0 1 2

Run after `dvc repro` (it reuses ``data/prepared`` and the S architecture of ``search@S``). Every
``params.yaml`` model and every retrained subnet is trained from scratch in a scratch folder with
``train.seed`` set to each seed (portable AVX2 kernels, as the pipeline trains), then scored on every
prepared benchmark set. Reports per model and set the mean and the sample standard deviation of
PSNR-Y over seeds: the noise a single run carries, which ``evaluate.seed_noise_db`` should hold so
that the evaluate table flags differences within it. Writes ``benchmarks/results/seeds.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from edgesr.kernels import use_portable_kernels  # noqa: E402

use_portable_kernels()  # before torch, like `edgesr train`

from edgesr.artifacts import search_dir, subnet_name, training_paths  # noqa: E402
from edgesr.config import load_params  # noqa: E402
from edgesr.data.prepare import available_benchmarks, load_pairs  # noqa: E402
from edgesr.files import write_json, write_text  # noqa: E402
from edgesr.inference import super_resolve  # noqa: E402
from edgesr.metrics import mean_psnr, psnr_y  # noqa: E402
from edgesr.stages import retrain, train  # noqa: E402
from edgesr.train.restore import trained_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _scratch(params, root: Path, seed: int) -> Path:
    """A project folder sharing the prepared data and the searches, with its own training outputs."""
    folder = Path(tempfile.mkdtemp(prefix=f"edgesr-seed{seed}-"))
    for key in ("prepared", "search"):
        target = folder / getattr(params.paths, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink((root / getattr(params.paths, key)).resolve(), target)
    return folder


def _seeded(params, seed: int):
    train_cfg = params.train.model_copy(update={"seed": seed})
    search = params.search.model_copy(
        update={
            "retrain": params.search.retrain.model_copy(update={"train": {**params.search.retrain.train, "seed": seed}})
        }
    )
    return params.model_copy(update={"train": train_cfg, "search": search})


def run_seed(params, root: Path, seed: int) -> dict[str, dict[str, float]]:
    """{model: {set: mean PSNR-Y}} of every model trained with ``seed``."""
    folder, seeded = _scratch(params, root, seed), _seeded(params, seed)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    sets = available_benchmarks(root / params.paths.prepared) or ["val"]
    pairs = {name: load_pairs(root / params.paths.prepared, name, params.scale) for name in sets}
    checkpoints = {}
    for name in params.models:
        train.run(seeded, name, folder)
        checkpoints[name] = training_paths(seeded, "models", name, folder).best
    for size in params.search.sizes:
        if (search_dir(params, size, root) / "architecture.json").is_file():
            retrain.run(seeded, size, params.scale, folder)
            name = subnet_name(size, params.scale)
            checkpoints[name] = training_paths(seeded, "retrain", name, folder).best
    scores = {}
    for name, checkpoint in checkpoints.items():
        model = trained_model(checkpoint, params.scale)
        scores[name] = {
            set_name: mean_psnr([psnr_y(super_resolve(model, lr), hr, params.scale) for _, lr, hr in set_pairs])
            for set_name, set_pairs in pairs.items()
        }
    shutil.rmtree(folder, ignore_errors=True)
    return scores


def summarise(per_seed: dict[int, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {set: {"mean", "std", "min", "max"}}} over seeds (sample std)."""
    first = next(iter(per_seed.values()))
    return {
        model: {
            set_name: {
                "mean": statistics.mean(values := [per_seed[s][model][set_name] for s in per_seed]),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "min": min(values),
                "max": max(values),
            }
            for set_name in sets
        }
        for model, sets in first.items()
    }


def markdown(summary: dict, seeds: list[int]) -> str:
    sets = list(next(iter(summary.values())))
    lines = [
        f"PSNR-Y over seeds {', '.join(map(str, seeds))}: mean +- sample std (min .. max)",
        "",
        "| model | " + " | ".join(sets) + " |",
        "|---|" + "---|" * len(sets),
    ]
    for model, per_set in summary.items():
        cells = [f"{v['mean']:.2f} +- {v['std']:.2f} ({v['min']:.2f} .. {v['max']:.2f})" for v in per_set.values()]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()
    params = load_params(args.params)
    root = args.params.resolve().parent
    per_seed = {seed: run_seed(params, root, seed) for seed in args.seeds}
    summary = summarise(per_seed)
    spread = max(v["std"] for per_set in summary.values() for v in per_set.values())
    write_json(
        RESULTS / "seeds.json", {"seeds": args.seeds, "per_seed": per_seed, "summary": summary, "max_std_db": spread}
    )
    text = markdown(summary, args.seeds) + f"\nLargest standard deviation: {spread:.3f} dB (evaluate.seed_noise_db)\n"
    write_text(RESULTS / "seeds.md", text)
    print(text, end="")


if __name__ == "__main__":
    main()
