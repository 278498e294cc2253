"""Serve the pipeline flow on a cron schedule against a running Prefect server.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m pipelines.serve     # schedule.cron of params.yaml
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m pipelines.serve --cron "*/10 * * * *"

The process stays up and runs ``edgesr-pipeline`` at every tick: its ``sources`` stage reads the
source folders again, ``prepare`` reruns only when they changed, and the models retrain only when the
prepared data changed (new or edited images), because DVC compares the prepared data's hash.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgesr.config import load_params
from pipelines.flow import pipeline_flow


def schedule_cron(project_dir: Path, cron: str | None) -> str:
    """``cron`` when given, else the ``schedule.cron`` of the project's ``params.yaml`` (validated there)."""
    return cron if cron is not None else load_params(project_dir / "params.yaml").schedule.cron


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cron", default=None, help="cron schedule (default: schedule.cron of params.yaml)")
    parser.add_argument("--project-dir", type=Path, default=Path("."), help="the DVC project to run")
    parser.add_argument("--name", default="edgesr-scheduled", help="deployment name")
    args = parser.parse_args()
    pipeline_flow.serve(
        name=args.name,
        cron=schedule_cron(args.project_dir, args.cron),
        limit=1,  # one pipeline run at a time: a tick during a long run waits (DVC locks the project anyway)
        parameters={"project_dir": str(args.project_dir.resolve())},
    )


if __name__ == "__main__":
    main()
