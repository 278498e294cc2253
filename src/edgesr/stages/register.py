"""Stage ``register``: each ``registry.models`` entry (default: ``deploy.default_model``) as a new version of
its registered model in the MLflow registry, with the alias ``candidate`` (issue 12).

A version holds the int8 OpenVINO IR, the int8 and fp32 ONNX, the input contract and the model's
evaluate, quantize and export metrics (:mod:`edgesr.registry.contents`), and is tagged with the git
commit, the params hash, the data hash, the register run and the pipeline run it belongs to. An int8
model that failed the quantize checks is not registered. A model whose files and contract equal its
latest version's is not registered again. Writes ``metrics/register.json`` (model -> version, new or
not), which the Prefect flow reads to attempt the promotion of new candidates.

So that pipeline runs compare side by side in the MLflow UI (issue 12 item 7), the register run logs, for
each model, what they are compared by: int8 and fp32 PSNR-Y per set, the int8 drop, Mult-Adds and the
tile latency of every device profile (measured here, as promotion does); a new version carries the same
numbers as tags, and every run draws ``<paths.plots>/register/<model>/versions.png`` (int8 PSNR-Y vs
latency of every registered version), logged on the run and, for a new version, among its files.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tqdm import tqdm

from edgesr.artifacts import check_int8_deployable, register_file
from edgesr.config import Params, params_hash
from edgesr.data.prepare import data_hash
from edgesr.files import write_json
from edgesr.plots import save_version_comparison
from edgesr.registry.contents import METRICS, assemble_version, contents_sha256
from edgesr.registry.profiles import profile_latencies
from edgesr.registry.store import Registry
from edgesr.tracking import PARENT_RUN_ENV, git_commit, stage_run, tracking_uri

__all__ = ["run"]


def _summary(params: Params, folder: Path) -> dict[str, float]:
    """What pipeline runs are compared by (issue 12): int8 PSNR-Y and drop per runtime and set, fp32
    PSNR-Y per set, Mult-Adds at 720p and the tile latency of each device profile, measured here."""
    metrics = json.loads((folder / METRICS).read_text())
    evaluate = metrics["evaluate"]
    summary = {f"fp32_psnr.{key[5:]}": value for key, value in evaluate.items() if key.startswith("psnr_")}
    summary["mult_adds_g"] = evaluate["mult_adds_g"]
    for runtime, result in metrics["quantize"].items():
        for set_name, psnr in result["psnr"]["int8"].items():
            summary[f"int8_psnr.{runtime}.{set_name}"] = psnr
            summary[f"int8_drop.{runtime}.{set_name}"] = result["sets"][set_name]["drop"]
    cfg = params.registry
    latencies = profile_latencies(cfg.profiles, folder, cfg.latency_repeats, cfg.latency_warmup)
    return summary | {f"latency_ms.{profile}": ms for profile, ms in latencies.items()}


def _comparison(params: Params, registry: Registry, name: str, root: Path) -> Path:
    """``<paths.plots>/register/<name>/versions.png``: int8 PSNR-Y vs latency of every registered version."""
    versions = {
        str(v.version): {k: float(value) for k, value in v.tags.items() if k.startswith(("int8_psnr.", "latency_ms."))}
        for v in registry.versions(name)
    }
    runtimes = {profile: p.runtime for profile, p in params.registry.profiles.items()}
    path = root / params.paths.plots / "register" / name / "versions.png"
    return save_version_comparison(versions, runtimes, f"{name}: registered versions", path)


def run(params: Params, root: Path = Path(".")) -> dict[str, dict]:
    """Register every ``registry.models`` entry whose files changed; returns ``{model: {version, new}}``."""
    prepared, deploy_root = root / params.paths.prepared, root / params.paths.deploy
    registry = Registry(tracking_uri(root))
    hashes = {"params_hash": params_hash(params), "data_hash": data_hash(prepared)}
    results: dict[str, dict] = {}
    with stage_run(
        "register",
        experiment=params.tracking.experiment,
        params={"registry": params.registry.model_dump(mode="json"), "models": params.registered_names()},
        root=root,
        **hashes,
    ) as tracker:
        for name in tqdm(params.registered_names(), desc="register"):
            for runtime in params.quantize.runtimes:
                check_int8_deployable(deploy_root, name, runtime)
            with tempfile.TemporaryDirectory(prefix=f"register-{name}-") as staging:
                folder = assemble_version(params, name, root, Path(staging))
                summary = _summary(params, folder)
                tracker.log_metrics({f"{name}/{key.replace('.', '/')}": value for key, value in summary.items()})
                digest = contents_sha256(folder)
                latest = registry.latest(name)
                if latest is not None and latest.tags.get("contents_sha256") == digest:
                    tqdm.write(f"register: {name} is unchanged since version {latest.version}; nothing registered")
                    version, new = latest, False
                else:
                    tags = {
                        "git_commit": git_commit(root),
                        **hashes,
                        "contents_sha256": digest,
                        "register_run_id": tracker.run_id,
                        "pipeline_run_id": os.environ.get(PARENT_RUN_ENV, ""),
                        "scale": str(params.scale),
                    } | {key: f"{value:.3f}" for key, value in summary.items()}
                    version, new = registry.register(name, folder, tracker.run_id, tags), True
            results[name] = {"version": str(version.version), "new": new}
            tracker.log_metrics({f"register/{name}/version": float(version.version)})
            comparison = _comparison(params, registry, name, root)
            tracker.log_artifact(comparison)
            if new:
                registry.publish(version, comparison.parent, "comparison")
        write_json(register_file(params, root), results)
    return results
