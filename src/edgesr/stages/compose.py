"""Stage ``compose``: ClassSR-style composition of ``compose.branches`` (paper 001 Table 3), both routers.

After ``retrain`` and ``quantize``: trains ClassSR's classifier with the branches frozen
(:mod:`edgesr.compose.training`, PyTorch fp32 branches), builds ARM's edge-score -> PSNR table from
LR training patches run through the deployed branches (:mod:`edgesr.compose.edge`), and evaluates on
every prepared benchmark set (the validation split when there is none) and the large photographs of
``compose.large_set`` when the folder exists: PSNR-Y / SSIM-Y, Mult-Adds as % of the largest branch on
the whole frame and on the same patches (ClassSR's convention), class histogram and seam ratio
(:mod:`edgesr.compose.seams`) of every routing (classifier, edge at ``eta``, the ``eta`` sweep, each
branch alone), all with the branches in their deployed form (``deploy.runtime`` / ``deploy.precision``:
OpenVINO int8 by default). The wall-clock of the composed model (each router) against the largest branch alone on
the whole frame is measured on the first two images of every set. A
classifier that sends more than ``compose.classifier.collapse_share`` of any set's patches to one
branch is reported as collapsed.

Writes ``<paths.compose>/classifier.pt`` and ``edge_table.json`` (what ``edgesr upscale --model composed``
loads), ``metrics/compose.json`` (DVC metric), ``metrics/compose.md``, ``plots/compose/psnr_vs_mult_adds.json``
(DVC plot) and ``.png``, ``plots/compose/routing_map.png``, and logs all of it to MLflow
(``compose/<set>/<routing>/psnr``, ..., ``classifier/loss`` per logged iteration).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgesr.artifacts import CLASSIFIER_FILE, EDGE_TABLE_FILE, compose_dir, deployable_checkpoint
from edgesr.compose.accounting import branch_patch_costs
from edgesr.compose.classifier import PatchClassifier
from edgesr.compose.composed import ComposedModel, FixedRouter, Router, require_two_branches
from edgesr.compose.deployed import branch_runner, classifier_router
from edgesr.compose.edge import EdgeRouter, EdgeTable, table_from_patches
from edgesr.compose.evaluation import evaluate_routings
from edgesr.compose.grid import patch_grid
from edgesr.compose.runners import BatchRunner
from edgesr.compose.training import ClassifierTraining, collapsed_branch, train_classifier
from edgesr.compose.wallclock import compare_wallclock
from edgesr.config import Params, params_hash
from edgesr.data.images import as_input
from edgesr.data.patches import PatchSampler
from edgesr.data.photo_sets import folder_pairs
from edgesr.data.prepare import available_benchmarks, data_hash, load_pairs
from edgesr.deploy.export import prepare_for_export
from edgesr.deploy.runners import deployed_runner
from edgesr.errors import UsageError
from edgesr.files import atomic_write, write_json, write_text
from edgesr.plots import save_compose_curve, save_routing_map
from edgesr.tracker import Tracker
from edgesr.tracking import MlflowTracker, stage_run
from edgesr.train.restore import trained_model

__all__ = ["run"]

WALLCLOCK_IMAGES = 2


def _large_set(params: Params, root: Path) -> Path | None:
    """The folder of ``compose.large_set`` (a ``quantize.photo_sets`` name); None, with a message, when it is
    not here. A name that is not a photo set is an error."""
    large, photo_sets = params.compose.large_set, params.quantize.photo_sets
    if large is None:
        return None
    if large not in photo_sets:
        raise UsageError(
            f"compose.large_set '{large}' is not a quantize.photo_sets name ({', '.join(photo_sets) or 'none'}): "
            "add the folder there (the sources stage fingerprints it) or set compose.large_set: null"
        )
    folder = root / photo_sets[large]
    if not folder.is_dir():
        tqdm.write(f"compose: large image set {large} skipped, folder {folder} not found")
        return None
    return folder


def _sets(params: Params, root: Path, large: Path | None) -> dict[str, list]:
    """Every prepared benchmark set (the validation split when there is none) and the ``large`` photographs."""
    prepared = root / params.paths.prepared
    sets = {s: load_pairs(prepared, s, params.scale) for s in (available_benchmarks(prepared) or ["val"])}
    if large is not None:
        sets[str(params.compose.large_set)] = folder_pairs(large, params.scale, params.compose.large_set_images)
    return sets


def _routers(classifier: PatchClassifier, edge: EdgeRouter, names: list[str], sweep: list[float]) -> dict[str, Router]:
    routers: dict[str, Router] = {"classifier": classifier, "edge": edge}
    routers |= {f"edge_eta_{eta:g}": EdgeRouter(edge.table, eta) for eta in sweep}
    routers |= {name: FixedRouter(index) for index, name in enumerate(names)}
    return routers


def _plot_rows(results: dict[str, dict], names: list[str], sweep: list[float]) -> list[dict]:
    rows = []
    for set_name, routings in results.items():
        for routing, r in routings.items():
            kind = "branch" if routing in names else "classifier" if routing == "classifier" else "edge"
            eta = next((e for e in sweep if routing == f"edge_eta_{e:g}"), None)
            rows.append(
                {
                    "set": set_name,
                    "routing": routing,
                    "kind": kind,
                    "eta": eta,
                    "psnr": r["psnr"],
                    "mult_adds_pct": r["percent_of_largest_frame"],
                }
            )
    return rows


def _markdown(results: dict[str, dict], names: list[str], wallclock: dict) -> str:
    head = [
        "set",
        "routing",
        "PSNR-Y / SSIM-Y",
        "Mult-Adds % of L (frame)",
        "% of L (same patches, ClassSR)",
        f"wall-clock / {wallclock['largest']} alone (median ratio, ms)",
        "histogram (" + " / ".join(names) + ")",
        "seam: error ratio / border step excess in levels (worst image; <= 1 / about 0: no seam)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for set_name, routings in results.items():
        for routing, r in routings.items():
            seam = "-" if r["seam_ratio"] is None else f"{r['seam_ratio']:.2f} / {r['seam_step']:+.2f}"
            timed = wallclock["sets"].get(set_name, {}).get(routing)
            clock = "-"
            if timed is not None:
                composed_ms = 1e3 * float(np.median([row["composed_s"] for row in timed["images"]]))
                largest_ms = 1e3 * float(np.median([row["largest_s"] for row in timed["images"]]))
                clock = f"{timed['median_ratio']:.2f} ({composed_ms:.0f} / {largest_ms:.0f})"
            lines.append(
                f"| {set_name} | {routing} | {r['psnr']:.2f} / {r['ssim']:.4f} | {r['percent_of_largest_frame']:.1f} "
                f"| {r['percent_of_largest_patches']:.1f} | {clock} | {' / '.join(map(str, r['histogram']))} | {seam} |"
            )
    lines.append("")
    lines.append(
        f"Wall-clock: {wallclock['runtime']} {wallclock['precision']}, {wallclock['threads']} threads, the first "
        f"{WALLCLOCK_IMAGES} images of each set, composed and {wallclock['largest']} alone on the whole frame "
        "alternating in the same run."
    )
    return "\n".join(lines) + "\n"


def _train_routers(
    params: Params,
    names: list[str],
    models: list[nn.Module],
    deployed: list[BatchRunner],
    patch_costs: list[int],
    root: Path,
    tracker: Tracker,
) -> tuple[PatchClassifier, ClassifierTraining, EdgeTable]:
    """ClassSR's classifier trained with the branches frozen, ARM's table from the deployed branches; both saved."""
    cfg, scale = params.compose, params.scale
    train_pairs = [(lr, hr) for _, lr, hr in load_pairs(root / params.paths.prepared, "train", scale)]
    torch.manual_seed(cfg.classifier.seed)  # the classifier's initial weights; the sampler has its own seed
    classifier = PatchClassifier(len(names))
    sampler = PatchSampler(train_pairs, scale, cfg.patch, cfg.classifier.seed)
    # the deploy forms run faster (an FGNAS subnet without its channel gathers and masks) and give the same outputs
    fast = [prepare_for_export(model) for model in models]
    training = train_classifier(classifier, fast, names, sampler, cfg.classifier, tracker)
    out_dir = compose_dir(params, root)
    atomic_write(
        out_dir / CLASSIFIER_FILE,
        lambda tmp: torch.save({"state_dict": classifier.state_dict(), "branches": names}, tmp),
    )
    table_lr, table_hr = PatchSampler(train_pairs, scale, cfg.patch, cfg.edge.seed).batch(0, cfg.edge.table_patches)
    hr_levels = (table_hr * 255).round().to(torch.uint8).numpy()
    table = table_from_patches(table_lr.numpy(), hr_levels, deployed, patch_costs, cfg.edge.bins)
    write_json(out_dir / EDGE_TABLE_FILE, {"branches": names, "table": table.as_dict()})
    return classifier, training, table


def _wallclock(
    params: Params,
    deployed: list[BatchRunner],
    routers: dict[str, Router],
    largest: str,
    sets: dict[str, list],
    root: Path,
) -> dict:
    """Per set, the composed model with each router against ``largest`` alone on the whole frame, on the
    set's first :data:`WALLCLOCK_IMAGES` images, same runtime and run."""
    deploy, cfg = params.deploy, params.compose
    alone = deployed_runner(params, largest, deploy.runtime, deploy.precision, root, checked=False)
    composed = {
        name: ComposedModel(deployed, router, params.scale, cfg.patch, cfg.stride) for name, router in routers.items()
    }
    timed = {
        set_name: {
            name: compare_wallclock(model, alone, [lr for _, lr, _ in pairs[:WALLCLOCK_IMAGES]], cfg.latency_repeats)
            for name, model in composed.items()
        }
        for set_name, pairs in sets.items()
    }
    return {
        "sets": timed,
        "largest": largest,
        "runtime": deploy.runtime,
        "precision": deploy.precision,
        "threads": deploy.threads,
    }


def _log(
    tracker: MlflowTracker,
    results: dict[str, dict],
    names: list[str],
    wallclock: dict,
    collapsed: dict[str, str | None],
    files: list[Path],
) -> None:
    tracker.log_metrics(
        {
            f"compose/{s}/{routing}/{key}": float(r[key])
            for s, routings in results.items()
            for routing, r in routings.items()
            for key in ("psnr", "ssim", "percent_of_largest_frame", "percent_of_largest_patches")
        }
        | {
            f"compose/{s}/classifier/share/{name}": share
            for s, r in results.items()
            for name, share in zip(names, r["classifier"]["shares"], strict=True)
        }
        | {
            f"compose/{s}/{router}/wallclock_ratio": r["median_ratio"]
            for s, routers in wallclock["sets"].items()
            for router, r in routers.items()
        }
    )
    tracker.set_tags({"compose.collapsed": ",".join(f"{s}:{b}" for s, b in collapsed.items() if b) or "no"})
    for path in files:
        tracker.log_artifact(path)


def run(params: Params, root: Path = Path(".")) -> dict:
    """Train the classifier, build the edge table, evaluate every routing; returns ``metrics/compose.json``'s data."""
    cfg, scale = params.compose, params.scale
    names = params.compose_branches()
    require_two_branches(len(names))
    large = _large_set(params, root)
    runtime, precision = params.deploy.runtime, params.deploy.precision
    prepared = root / params.paths.prepared
    torch.set_num_threads(params.deploy.threads)
    models = [trained_model(deployable_checkpoint(params, name, root), scale) for name in names]
    patch_costs = branch_patch_costs(models, scale, cfg.patch)
    largest = int(np.argmax(patch_costs))
    # measured whatever the quantize checks said (as a benchmark does); `edgesr upscale` refuses a failed int8 model
    deployed = [branch_runner(params, name, runtime, precision, root, checked=False) for name in names]
    sets = _sets(params, root, large)
    metrics_dir, plots_dir = root / params.paths.metrics, root / params.paths.plots / "compose"
    with stage_run(
        "compose",
        experiment=params.tracking.experiment,
        params={
            "compose": cfg.model_dump(mode="json"),
            "branches": names,
            "scale": scale,
            "runtime": runtime,
            "precision": precision,
        },
        params_hash=params_hash(cfg),
        data_hash=data_hash(prepared),
        root=root,
    ) as tracker:
        classifier, training, table = _train_routers(params, names, models, deployed, patch_costs, root, tracker)
        routers = _routers(classifier, EdgeRouter(table, cfg.edge.eta), names, cfg.edge.eta_sweep)
        results = {
            set_name: evaluate_routings(
                pairs,
                deployed,
                routers,
                patch_costs,
                models[largest],
                scale,
                cfg.patch,
                cfg.stride,
                desc=f"compose {set_name}",
            )
            for set_name, pairs in sets.items()
        }
        collapsed = {
            s: collapsed_branch(r["classifier"]["histogram"], names, cfg.classifier.collapse_share)
            for s, r in results.items()
        }
        for set_name, branch in collapsed.items():
            if branch is not None:
                tqdm.write(
                    f"compose: the classifier collapsed on {set_name}: {branch} takes more than "
                    f"{cfg.classifier.collapse_share:.0%} of the patches"
                )
        timed_routers = {
            "classifier": classifier_router(classifier, params.deploy.runtime, params.deploy.threads),
            "edge": routers["edge"],
        }
        wallclock = _wallclock(params, deployed, timed_routers, names[largest], sets, root)
        metrics = {
            "branches": names,
            "largest": names[largest],
            "patch_mult_adds": dict(zip(names, patch_costs, strict=True)),
            "classifier": {
                "history": training.history,
                "histogram": training.histogram,
                "collapsed_in_training": training.collapsed,
                "collapsed": collapsed,
            },
            "edge_table": table.as_dict(),
            "sets": results,
            "wallclock": wallclock,
        }
        write_json(metrics_dir / "compose.json", metrics)
        write_text(metrics_dir / "compose.md", _markdown(results, names, wallclock))
        rows = _plot_rows(results, names, cfg.edge.eta_sweep)
        write_json(plots_dir / "psnr_vs_mult_adds.json", rows)
        pictured_set = list(sets)[-1]  # the large photographs when they are here: where composition pays off
        curve = save_compose_curve(
            [r for r in rows if r["set"] == pictured_set], pictured_set, plots_dir / "psnr_vs_mult_adds.png"
        )
        _, lr, _ = sets[pictured_set][0]
        grid = patch_grid(lr.shape[0], lr.shape[1], cfg.patch, cfg.stride)
        routes = classifier.route(np.empty(0), as_input(lr), grid)
        title = f"classifier routing, {pictured_set}"
        picture = save_routing_map(
            lr, routes, *grid.tops_lefts(), cfg.patch, names, title, plots_dir / "routing_map.png"
        )
        out_dir = compose_dir(params, root)
        files = [
            metrics_dir / "compose.json",
            metrics_dir / "compose.md",
            out_dir / EDGE_TABLE_FILE,
            out_dir / CLASSIFIER_FILE,
            curve,
            picture,
        ]
        _log(tracker, results, names, wallclock, collapsed, files)
    return metrics
