"""Serve the pipeline flow on a cron schedule against a running Prefect server.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m pipelines.serve     # schedule.cron of params.yaml
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m pipelines.serve --cron "*/10 * * * *"

The process stays up and runs ``edgesr-pipeline`` at every tick: its ``sources`` stage reads the
source folders again, ``prepare`` reruns only when they changed, and the models retrain only when the
prepared data changed (new or edited images), because DVC compares the prepared data's hash.

Ticks missed while nothing served the deployment are caught up once, not replayed: the server's
scheduler keeps inserting a run per tick while the serving process is down (killed, or the server
stopped first, so its schedule was never paused), and Prefect's runner would start every one of those
"Late" runs back to back (PrefectHQ/prefect#15886). Before serving, :func:`drop_missed_runs` keeps the
newest missed run and deletes the older ones.
"""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prefect import Flow, get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterNextScheduledStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from edgesr.config import load_params
from pipelines.flow import pipeline_flow

LOG = logging.getLogger(__name__)
PAGE = 200  # the server's default page size for flow-run queries
WAITING_FOR_A_SLOT = "AwaitingConcurrencySlot"  # scheduled by the concurrency limit, not by a missed tick


def schedule_cron(project_dir: Path, cron: str | None) -> str:
    """``cron`` when given, else the ``schedule.cron`` of the project's ``params.yaml`` (validated there)."""
    return cron if cron is not None else load_params(project_dir / "params.yaml").schedule.cron


def drop_missed_runs(deployment: str) -> list[FlowRun]:
    """Delete every missed tick of ``deployment`` ("flow/deployment") but the newest, and return the deleted runs.

    A missed tick is an auto-scheduled run still waiting (state type SCHEDULED, never run, not waiting for
    a concurrency slot) whose scheduled start has passed. Runs created by hand, retries and future ticks are
    kept. A deployment the server does not know yet has none.
    """
    with get_client(sync_client=True) as client:
        try:
            deployment_id = client.read_deployment_by_name(deployment).id
        except ObjectNotFound:
            return []
        waiting = FlowRunFilter(
            deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
            next_scheduled_start_time=FlowRunFilterNextScheduledStartTime(before_=datetime.now(UTC)),
        )
        runs: list[FlowRun] = []
        while page := client.read_flow_runs(
            flow_run_filter=waiting, sort=FlowRunSort.NEXT_SCHEDULED_START_TIME_ASC, limit=PAGE, offset=len(runs)
        ):
            runs += page
        missed = [
            run
            for run in runs
            if run.auto_scheduled
            and run.run_count == 0
            and run.state is not None
            and run.state.name != WAITING_FOR_A_SLOT
        ]
        stale = missed[:-1]
        for run in stale:
            client.delete_flow_run(run.id)
    if stale:
        LOG.warning(
            "%s: deleted %d missed scheduled runs (%s to %s); the newest missed run, %s, runs now",
            deployment,
            len(stale),
            stale[0].next_scheduled_start_time,
            stale[-1].next_scheduled_start_time,
            missed[-1].next_scheduled_start_time,
        )
    return stale


def serve_on_schedule(flow: Flow[..., Any], name: str, cron: str, **serve_options: Any) -> None:
    """``flow.serve(name, cron)`` after :func:`drop_missed_runs`, so a restart catches up once."""
    drop_missed_runs(f"{flow.name}/{name}")
    flow.serve(name=name, cron=cron, **serve_options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cron", default=None, help="cron schedule (default: schedule.cron of params.yaml)")
    parser.add_argument("--project-dir", type=Path, default=Path("."), help="the DVC project to run")
    parser.add_argument("--name", default="edgesr-scheduled", help="deployment name")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve_on_schedule(
            pipeline_flow,
            args.name,
            schedule_cron(args.project_dir, args.cron),
            limit=1,  # one pipeline run at a time: a tick during a long run waits (DVC locks the project anyway)
            parameters={"project_dir": str(args.project_dir.resolve())},
        )
    except httpx.ConnectError as error:
        raise SystemExit(
            f"pipelines.serve: no Prefect server answers at PREFECT_API_URL={PREFECT_API_URL.value()} ({error}); "
            "start one with `make prefect-server` (then `make serve`), or point PREFECT_API_URL at yours"
        ) from error


if __name__ == "__main__":
    main()
