"""Stage ``prepare``: LR/HR pairs (MATLAB bicubic), train/val split and benchmark sets, with a manifest."""

from __future__ import annotations

from pathlib import Path

from edgesr.config import Params, params_hash
from edgesr.data.prepare import prepare
from edgesr.stages import data_hash, write_json
from edgesr.tracking import stage_run


def _counts(manifest: dict) -> dict[str, int]:
    """Flatten the manifest's per-split, per-scale image counts into ``{"train/x2": 9, ...}``."""
    counts: dict[str, int] = {}
    for split, per_scale in manifest["counts"].items():
        for scale, count in per_scale.items():
            counts[f"{split}/{scale}"] = int(count)
    return counts


def run(params: Params, root: Path = Path(".")) -> dict:
    """Prepare the data into ``paths.prepared`` and write ``metrics/prepare.json``; returns the manifest."""
    out_dir = root / params.paths.prepared
    manifest = prepare(params.prepare, out_dir, root=root)
    counts = _counts(manifest)
    write_json(
        {"images": counts, "skipped": len(manifest.get("skipped", []))}, root / params.paths.metrics / "prepare.json"
    )
    with stage_run(
        "prepare",
        experiment=params.tracking.experiment,
        params={"prepare": params.prepare.model_dump(mode="json")},
        params_hash=params_hash(params.prepare),
        data_hash=data_hash(out_dir),
        root=root,
    ) as tracker:
        tracker.log_metrics({f"images/{k}": v for k, v in counts.items()})
        tracker.log_artifact(out_dir / "manifest.json")
    return manifest
