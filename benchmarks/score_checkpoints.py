"""Score trained checkpoints on a project's prepared benchmark sets (fp32 PyTorch), as the cpu-long tables are.

    .venv/bin/python benchmarks/score_checkpoints.py models/train/plain_resnet/best.pt \\
        models/retrain/fgnas_S_x2/best.pt --prepared data/prepared --scale 2 --out scores.json

For each checkpoint (any zoo model or retrained subnet: the architecture comes from its metadata,
:func:`edgesr.train.restore.trained_model`): parameters and Mult-Adds for a 1280x720 output
(:func:`edgesr.complexity.count_complexity`) and the mean PSNR-Y / SSIM-Y (border = scale) on every
benchmark set of ``--prepared`` at ``--scale`` (:func:`edgesr.stages.evaluate.score`, the evaluate
stage's metric before export). This is how the ``benchmarks/results/cpu-long/*.json`` rows of issue 13
item 4 (plain net, hand-set wide nets, searched subnets) compare nets trained outside the deploy list.
Prints one line per checkpoint; ``--out`` writes them as JSON keyed by checkpoint path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from edgesr.complexity import count_complexity  # noqa: E402
from edgesr.data.prepare import available_benchmarks, load_pairs  # noqa: E402
from edgesr.files import write_json  # noqa: E402
from edgesr.stages.evaluate import score  # noqa: E402
from edgesr.train.restore import trained_model  # noqa: E402


def score_checkpoint(
    checkpoint: Path, pairs: dict[str, list[tuple[str, np.ndarray, np.ndarray]]], scale: int
) -> dict[str, object]:
    """Complexity and per-set (PSNR-Y, SSIM-Y) of one checkpoint on ``pairs`` (set name -> its LR / HR pairs)."""
    model = trained_model(checkpoint, scale)
    complexity = count_complexity(model, scale)
    row: dict[str, object] = {"params": complexity.params, "mult_adds_g": complexity.mult_adds / 1e9}
    for name, set_pairs in pairs.items():
        psnr, ssim = score(model, set_pairs, scale)
        row[name] = {"psnr_y": psnr, "ssim_y": ssim}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", type=Path, nargs="+", help="best.pt / last.pt of `edgesr train` or retrain")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"), help="the prepare stage's output")
    parser.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    pairs = {name: load_pairs(args.prepared, name, args.scale) for name in available_benchmarks(args.prepared)}
    rows = {}
    for checkpoint in args.checkpoints:  # the sets are read once, not once per checkpoint
        row = rows[str(checkpoint)] = score_checkpoint(checkpoint, pairs, args.scale)
        sets = ", ".join(f"{k} {v['psnr_y']:.2f} / {v['ssim_y']:.4f}" for k, v in row.items() if isinstance(v, dict))
        print(f"{checkpoint}: {row['mult_adds_g']:.2f} G, {row['params']:,} params; {sets}", flush=True)
    if args.out:
        write_json(args.out, rows)


if __name__ == "__main__":
    main()
