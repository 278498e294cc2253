"""FGNAS ablations of paper 001's Tables 4 and 5 at CPU scale, and the search overhead (not a test).

    .venv/bin/python benchmarks/fgnas_ablation.py --prepared data/prepared --search-iterations 600 \\
        --retrain-iterations 1200 --target-g 3.5

Every row searches a supernet (same blocks, width, data, iterations and seed) and retrains the found
subnet from scratch with the same budget, then scores Set5 / Set14 (or the validation split) at x2.
Rows that search channels share one Mult-Adds target at 720p (the issue's "same budget for each
row"); rows without channel search cannot meet a budget and report what they cost. One more row
searches FGNAS with Eq. 4's backward shared among a channel's alive sub-maps (``count_gradient:
shared``, issue 13) against the paper's sum, with the channels each search kept per block:

    Table 4  (1) supernet, no search       (2) channel search only
             (3) activation search only, no regularizer (as the paper)   (4) both (FGNAS)
    Table 5  (1) EDSR residual block        (2) + point-wise conv
             (3) + multiple activations     (4) searchable block (= Table 4 (4))

The search overhead is the median time of a search iteration (gates + regularizer + lambda update)
divided by that of a plain training iteration of the same supernet without gates, in one run.
Results: ``benchmarks/results/fgnas_ablation.json`` and ``.md``. Runs on CUDA when present.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from edgesr.complexity import count_complexity
from edgesr.data.patches import PatchSampler
from edgesr.data.prepare import available_benchmarks, load_pairs
from edgesr.files import write_json, write_text
from edgesr.inference import super_resolve
from edgesr.metrics import mean_psnr, psnr_y
from edgesr.models.fgnas import FGNAS
from edgesr.search.budget import SearchObjective, finish_search
from edgesr.search.extract import extract_architecture
from edgesr.search.settings import BudgetConfig, MultAddsBudget, NoBudget, SupernetConfig
from edgesr.search.supernet import Supernet
from edgesr.train.settings import CyclicSchedule, TrainConfig
from edgesr.train.trainer import load_model_weights, train

SCALE = 2
ROWS: dict[str, tuple[dict[str, Any], bool]] = {
    # name: (supernet overrides, searched under the shared Mult-Adds target?)
    "T4 (1) supernet, no search": ({"search_channels": False, "search_activations": False}, False),
    "T4 (2) channel search only": ({"search_activations": False}, True),
    "T4 (3) activation search only": ({"search_channels": False}, False),
    "T4 (4) / T5 (4) FGNAS": ({}, True),
    "T4 (4) FGNAS, Eq. 4's count gradient shared (issue 13)": ({"count_gradient": "shared"}, True),
    "T5 (1) EDSR residual block": ({"pointwise": False, "activations": ["relu"]}, True),
    "T5 (2) + point-wise conv": ({"activations": ["relu"]}, True),
    "T5 (3) + multiple activations": ({"pointwise": False}, True),
}


def _config(iterations: int, device: str) -> TrainConfig:
    return TrainConfig(
        iterations=iterations,
        batch_size=16,
        lr_patch=32,
        lr=2.5e-3,
        scheduler=CyclicSchedule(base_lr=5e-5, final_lr=1e-4, up_fraction=0.05),
        val_every=iterations,
        checkpoint_every=iterations,
        log_every=max(1, iterations // 10),
        device=device,
        threads=2 if device == "cpu" else None,
    )


def _score(model: torch.nn.Module, pairs: list, device: torch.device) -> float:
    return mean_psnr(psnr_y(super_resolve(model, lr, device), hr, SCALE) for _, lr, hr in pairs)


def search_overhead(cfg: SupernetConfig, budget: BudgetConfig, device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds per iteration: search (gates + R + lambda) vs the same supernet without gates."""
    times = {}
    for name, overrides in (("search", {}), ("plain", {"search_channels": False, "search_activations": False})):
        torch.manual_seed(0)
        net = Supernet(cfg.model_copy(update=overrides), SCALE).to(device)
        objective = None
        if name == "search":
            objective = SearchObjective(budget, lambda m: m.mult_adds(), net.mult_adds().item(), repeats).to(device)
        optimizer = torch.optim.Adam(net.parameters(), 1e-4)
        lr, hr = torch.rand(16, 3, 32, 32, device=device), torch.rand(16, 3, 64, 64, device=device)
        samples = []
        for index in range(repeats + 3):
            start = time.perf_counter()
            loss = (net(lr) - hr).abs().mean()
            if objective is not None:
                loss = objective(net, loss, index)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            samples.append(time.perf_counter() - start)
        times[name] = statistics.median(samples[3:])
    return {"search_s": times["search"], "plain_s": times["plain"], "ratio": times["search"] / times["plain"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--target-g", type=float, default=3.5, help="shared Mult-Adds budget at 720p (G)")
    parser.add_argument("--search-iterations", type=int, default=600)
    parser.add_argument("--retrain-iterations", type=int, default=1200)
    parser.add_argument("--bicubic-skip", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--rows", nargs="*", help="substrings of row names to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fgnas_ablation.json"))
    args = parser.parse_args()
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")

    train_pairs = load_pairs(args.prepared, "train", SCALE)
    val_pairs = load_pairs(args.prepared, "val", SCALE)
    sets = available_benchmarks(args.prepared) or ["val"]
    benchmarks = {s: load_pairs(args.prepared, s, SCALE) for s in sets}
    base = SupernetConfig(num_blocks=args.blocks, width=args.width, bicubic_skip=args.bicubic_skip)
    target = MultAddsBudget(target_g=args.target_g)
    results: dict[str, Any] = {
        "settings": vars(args) | {"prepared": str(args.prepared), "out": str(args.out), "device": device},
        "search_overhead": search_overhead(base, target, torch.device(device), repeats=20),
        "rows": {},
    }
    for row, (overrides, budgeted) in ROWS.items():
        if args.rows and not any(part in row for part in args.rows):
            continue
        cfg = base.model_copy(update=overrides)
        budget = target if budgeted else NoBudget()
        torch.manual_seed(0)
        supernet = Supernet(cfg, SCALE)
        cost = lambda net: net.mult_adds()  # noqa: E731
        full_mult_adds = supernet.mult_adds().item()
        objective = SearchObjective(budget, cost, full_mult_adds, args.search_iterations)
        run_cfg = _config(args.search_iterations, device)
        sampler = PatchSampler([(lr, hr) for _, lr, hr in train_pairs], SCALE, run_cfg.lr_patch, run_cfg.seed)
        out = args.out.parent / "fgnas_ablation_runs" / "_".join(row.split()[:2] + [str(cfg.count_gradient)])
        start = time.perf_counter()
        train(supernet, sampler, val_pairs, run_cfg, SCALE, out / "search", objective=objective)
        within = finish_search(supernet, budget, cost).within_budget
        arch = extract_architecture(supernet)
        search_s = time.perf_counter() - start
        torch.manual_seed(0)
        subnet = FGNAS(arch, SCALE, bicubic_skip=cfg.bicubic_skip)
        retrain_cfg = _config(args.retrain_iterations, device)
        retrained = train(subnet, sampler, val_pairs, retrain_cfg, SCALE, out / "retrain")
        load_model_weights(subnet, retrained.best_checkpoint)
        dev = next(subnet.parameters()).device
        complexity = count_complexity(subnet, SCALE)
        results["rows"][row] = {
            "mult_adds_g": complexity.mult_adds / 1e9,
            "params": complexity.params,
            "within_budget": within if budgeted else None,
            "psnr": {s: _score(subnet, pairs, dev) for s, pairs in benchmarks.items()},
            "supernet_mult_adds_g": full_mult_adds / 1e9,
            "search_seconds": search_s,
            "trunk": len(arch.trunk_channels()),
            "mult_channels": [len(b.mult_channels()) for b in arch.blocks],
            "pointwise_channels": [len(b.pointwise) if b.pointwise is not None else None for b in arch.blocks],
            "residual_channels": [len(b.residual) for b in arch.blocks],
        }
        print(row, json.dumps(results["rows"][row]["psnr"]), f"{complexity.mult_adds / 1e9:.2f} G", flush=True)
        write_json(args.out, results)
    lines = [
        "| row | " + " | ".join(f"{s} PSNR" for s in sets) + " | Mult-Adds 720p (G) | params |",
        "|---" * (len(sets) + 3) + "|",
    ]
    for row, r in results["rows"].items():
        cells = [f"{r['psnr'][s]:.2f}" for s in sets]
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {r['mult_adds_g']:.2f} | {r['params']:,} |")
    overhead = results["search_overhead"]
    times = f"{overhead['search_s'] * 1e3:.1f} vs {overhead['plain_s'] * 1e3:.1f} ms"
    lines.append(f"\nsearch overhead: {overhead['ratio']:.2f}x ({times} per iteration)")
    write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
