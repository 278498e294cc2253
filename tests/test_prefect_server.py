"""The scheduled path against a real `prefect server start`: its scheduler turns a served deployment's
cron schedule into scheduled flow runs, and the serving runner executes one of them (the served pipeline
itself: tests/test_pipeline.py).

`prefect_test_harness` does not cover this: its server is ephemeral and runs no services, so no
scheduler inserts cron runs there, and a dependency that breaks the scheduler (SQLAlchemy 2.1 with
Prefect 3.8.8: `InvalidRequestError: Can't evaluate bulk DML statement` in `_insert_scheduled_flow_runs`)
passes every other test.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from tests.prefect_server import CRON, ROOT, TRACEBACK, Harness, prefect_server, raised_errors, read_deployment
from tests.scheduled_flow import DEPLOYMENT_NAME, FLOW_NAME

pytestmark = pytest.mark.slow


def test_raised_errors_reads_each_link_of_a_chained_traceback():
    log = f"""INFO: started
{TRACEBACK}
  File "aiosqlite/core.py", line 63, in _connection_worker_thread
    result = function()
sqlite3.OperationalError: database is locked

The above exception was the direct cause of the following exception:

{TRACEBACK}
  File "prefect/server/services/late_runs.py", line 80, in run_once
    await self._mark_flow_run_as_late(session=session, flow_run=flow_run)
sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked
[SQL: INSERT INTO flow_run_state (flow_run_id) VALUES (:flow_run_id)]
INFO: later
{TRACEBACK}
  File "prefect/server/services/scheduler.py", line 12, in _insert_scheduled_flow_runs
KeyError: 'deployment_id'
{TRACEBACK}
  File "still/being/written.py", line 1, in f
"""
    assert raised_errors(log) == [
        "sqlite3.OperationalError: database is locked",
        "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked",
        "KeyError: 'deployment_id'",
    ]


def test_serve_without_a_server_says_to_start_one(tmp_path: Path):
    unstarted = Harness(tmp_path)  # its environment points at a free port where no server was started
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.serve", "--project-dir", str(ROOT)],
        cwd=ROOT,
        env=unstarted.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert f"no Prefect server answers at PREFECT_API_URL={unstarted.api_url}" in done.stderr
    assert "start one with `make prefect-server`" in done.stderr and TRACEBACK not in done.stderr


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with prefect_server(tmp_path) as started:
        yield started


def test_real_server_schedules_cron_runs_and_runner_executes_one(harness: Harness, tmp_path: Path):
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterDeploymentId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    out_dir = tmp_path / "ran"  # each run of the probe flow writes out_dir/<its id>
    out_dir.mkdir()
    started = datetime.now(UTC)
    harness.serve(out_dir)

    with temporary_settings(updates={PREFECT_API_URL: harness.api_url}), get_client(sync_client=True) as client:
        dep = harness.wait_for(
            lambda: read_deployment(client, f"{FLOW_NAME}/{DEPLOYMENT_NAME}"), "the served deployment"
        )
        assert [s.schedule.cron for s in dep.schedules] == [CRON] and all(s.active for s in dep.schedules)

        def scheduled_runs():
            return client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    deployment_id=FlowRunFilterDeploymentId(any_=[dep.id]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])),
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            )

        # the server's scheduler, not the client, creates them: at least its min_runs (3) ahead
        runs = harness.wait_for(lambda: (r := scheduled_runs()) and len(r) >= 3 and r, "the scheduler's flow runs")
        assert all(run.auto_scheduled for run in runs)
        assert all(run.parameters == {"out_dir": str(out_dir)} for run in runs)
        times = [run.expected_start_time for run in runs]
        # cron "* * * * *": whole minutes, one a minute, from the current minute on
        assert all(t.second == 0 and t.microsecond == 0 for t in times)
        assert all(b - a == timedelta(minutes=1) for a, b in pairwise(times))
        assert times[0] >= started.replace(second=0, microsecond=0)

        # bring one run that is well ahead (the runner does not touch it yet) to now rather than wait for
        # its minute; the serving runner picks it up
        target = next(run for run in runs if run.expected_start_time > datetime.now(UTC) + timedelta(seconds=30))
        result = client.set_flow_run_state(target.id, Scheduled(scheduled_time=datetime.now(UTC)))
        assert result.state is not None and result.state.is_scheduled(), result
        state = harness.wait_for(
            lambda: (s := client.read_flow_run(target.id).state) is not None and s.is_final() and s,
            "the rescheduled run to finish",
        )
        assert state.is_completed(), f"{state}\n{harness.diagnostics()}"
        assert (out_dir / str(target.id)).read_text() == f"{FLOW_NAME} ran\n"
        # the runner runs nothing early: the runs a few minutes ahead still wait for their minute
        later = {run.id for run in runs if run.expected_start_time > datetime.now(UTC) + timedelta(minutes=2)}
        assert later and later <= {run.id for run in scheduled_runs()}

    harness.assert_server_log_clean()


def test_a_restarted_serve_runs_the_newest_missed_tick_once_and_deletes_the_older_ones(
    harness: Harness, tmp_path: Path
):
    """PrefectHQ/prefect#15886: while nothing serves a deployment, its ticks pass and stay Scheduled ("Late"),
    and a restarted runner would start them all back to back. `serve_on_schedule` (pipelines.serve) deletes the
    missed ticks but the newest before it serves; runs created by hand and future ticks stay."""
    from prefect import get_client
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    daily = "0 3 * * *"
    out_dir = tmp_path / "ran"
    out_dir.mkdir()
    first = harness.serve(out_dir, daily)

    with temporary_settings(updates={PREFECT_API_URL: harness.api_url}), get_client(sync_client=True) as client:
        dep = harness.wait_for(
            lambda: read_deployment(client, f"{FLOW_NAME}/{DEPLOYMENT_NAME}"), "the served deployment"
        )
        ahead = harness.wait_for(
            lambda: (r := client.read_flow_runs(sort=FlowRunSort.EXPECTED_START_TIME_ASC)) and len(r) >= 5 and r,
            "the scheduler's five daily runs",
        )
        assert all(run.auto_scheduled and run.deployment_id == dep.id for run in ahead)
        harness.kill(first)

        # the three nearest ticks become missed ones, 3, 2 and 1 hours ago; one run was started by hand
        now = datetime.now(UTC)
        missed = ahead[:3]
        for hours_ago, run in zip((3, 2, 1), missed, strict=True):
            client.set_flow_run_state(run.id, Scheduled(scheduled_time=now - timedelta(hours=hours_ago)), force=True)
        by_hand = client.create_flow_run_from_deployment(
            dep.id, state=Scheduled(scheduled_time=now - timedelta(hours=4))
        )
        assert not by_hand.auto_scheduled

        harness.serve(out_dir, daily)
        for run in (missed[-1], by_hand):
            state = harness.wait_for(
                lambda run=run: (s := client.read_flow_run(run.id).state) is not None and s.is_final() and s,
                "the newest missed tick and the run started by hand to finish",
            )
            assert state.is_completed(), f"{state}\n{harness.diagnostics()}"
        for run in missed[:-1]:
            with pytest.raises(ObjectNotFound):
                client.read_flow_run(run.id)
        assert sorted(path.name for path in out_dir.iterdir()) == sorted([str(missed[-1].id), str(by_hand.id)])
        # the restart's deployment update makes the server schedule the future ticks again (new runs, same times)
        future = {run.expected_start_time for run in ahead[3:]}
        harness.wait_for(
            lambda: (
                future
                <= {
                    run.expected_start_time for run in client.read_flow_runs() if run.state and run.state.is_scheduled()
                }
            ),
            "the future ticks to stay scheduled",
        )
    assert "deleted 2 missed scheduled runs" in harness.serve_log.read_text()
    harness.assert_server_log_clean()
