"""Stage ``register``: each ``registry.models`` entry (default: ``deploy.default_model``) as a new version of
its registered model in the MLflow registry, with the alias ``candidate`` (issue 12).

A version holds the int8 OpenVINO IR, the int8 and fp32 ONNX, the input contract and the model's
evaluate, quantize and export metrics (:mod:`edgesr.registry.contents`), and is tagged with the git
commit, the params hash, the data hash, the register run and the pipeline run it belongs to. An int8
model that failed the quantize checks is not registered. A model whose files and contract equal its
latest version's is not registered again. Writes ``metrics/register.json`` (model -> version, new or
not), which the Prefect flow reads to attempt the promotion of new candidates.
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
from edgesr.registry.contents import METRICS, assemble_version, contents_sha256
from edgesr.registry.store import Registry
from edgesr.tracking import PARENT_RUN_ENV, git_commit, stage_run, tracking_uri

__all__ = ["run"]


def _metric_tags(folder: Path) -> dict[str, str]:
    """The int8 PSNR-Y and drop per runtime and set, as version tags for the registry's list view."""
    quantize = json.loads((folder / METRICS).read_text())["quantize"]
    tags = {}
    for runtime, result in quantize.items():
        for set_name, psnr in result["psnr"]["int8"].items():
            tags[f"int8_psnr.{runtime}.{set_name}"] = f"{psnr:.3f}"
            tags[f"int8_drop.{runtime}.{set_name}"] = f"{result['sets'][set_name]['drop']:.3f}"
    return tags


def run(params: Params, root: Path = Path(".")) -> dict[str, dict]:
    """Register every ``registry.models`` entry whose files changed; returns ``{model: {version, new}}``."""
    prepared, deploy_root = root / params.paths.prepared, root / params.paths.deploy
    registry = Registry(tracking_uri(root))
    results: dict[str, dict] = {}
    with stage_run(
        "register",
        experiment=params.tracking.experiment,
        params={"registry": params.registry.model_dump(mode="json"), "models": params.registered_names()},
        params_hash=params_hash(params),
        data_hash=data_hash(prepared),
        root=root,
    ) as tracker:
        for name in tqdm(params.registered_names(), desc="register"):
            for runtime in params.quantize.runtimes:
                check_int8_deployable(deploy_root, name, runtime)
            with tempfile.TemporaryDirectory(prefix=f"register-{name}-") as staging:
                folder = assemble_version(params, name, root, Path(staging))
                digest = contents_sha256(folder)
                latest = registry.latest(name)
                if latest is not None and latest.tags.get("contents_sha256") == digest:
                    tqdm.write(f"register: {name} is unchanged since version {latest.version}; nothing registered")
                    results[name] = {"version": str(latest.version), "new": False}
                    continue
                tags = {
                    "git_commit": git_commit(root),
                    "params_hash": params_hash(params),
                    "data_hash": data_hash(prepared),
                    "contents_sha256": digest,
                    "register_run_id": tracker.run_id,
                    "pipeline_run_id": os.environ.get(PARENT_RUN_ENV, ""),
                    "scale": str(params.scale),
                } | _metric_tags(folder)
                version = registry.register(name, folder, tracker.run_id, tags)
            results[name] = {"version": str(version.version), "new": True}
            tracker.log_metrics({f"register/{name}/version": float(version.version)})
        write_json(register_file(params, root), results)
    return results
