"""Stage ``prepare``: LR/HR pairs (MATLAB bicubic), train/val split and benchmark sets, with a manifest."""

from __future__ import annotations

from pathlib import Path

from edgesr.config import Params, params_hash
from edgesr.data.prepare import MANIFEST_NAME, data_hash, prepare
from edgesr.files import write_json
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
    with stage_run(
        "prepare",
        experiment=params.tracking.experiment,
        params={"prepare": params.prepare.model_dump(mode="json")},
        params_hash=params_hash(params.prepare),
        data_hash="",  # the data is this stage's output: tagged below once it exists
        root=root,
    ) as tracker:
        manifest = prepare(params.prepare, out_dir, root=root)
        counts = _counts(manifest)
        write_json(
            root / params.paths.metrics / "prepare.json",
            {"images": counts, "skipped": len(manifest.get("skipped", []))},
        )
        tracker.set_tags({"data_hash": data_hash(out_dir)})
        tracker.log_metrics({f"images/{k}": v for k, v in counts.items()})
        tracker.log_artifact(out_dir / MANIFEST_NAME)
    return manifest
