"""Serve the pipeline flow on a cron schedule against a running Prefect server.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m pipelines.serve --cron "0 3 * * *"

The process stays up and runs ``edgesr-pipeline`` at every tick: its ``sources`` stage reads the
source folders again, ``prepare`` reruns only when they changed, and the models retrain only when the
prepared data changed (new or edited images), because DVC compares the prepared data's hash.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.flow import pipeline_flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cron", default="0 3 * * *", help="cron schedule (default: %(default)s, daily at 03:00)")
    parser.add_argument("--project-dir", type=Path, default=Path("."), help="the DVC project to run")
    parser.add_argument("--name", default="edgesr-scheduled", help="deployment name")
    args = parser.parse_args()
    pipeline_flow.serve(
        name=args.name,
        cron=args.cron,
        parameters={"project_dir": str(args.project_dir.resolve())},
    )


if __name__ == "__main__":
    main()
