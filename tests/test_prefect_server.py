"""The scheduled path against a real `prefect server start`: its scheduler turns a served deployment's
cron schedule into scheduled flow runs, and the serving runner executes one of them.

`prefect_test_harness` does not cover this: its server is ephemeral and runs no services, so no
scheduler inserts cron runs there, and a dependency that breaks the scheduler (SQLAlchemy 2.1 with
Prefect 3.8.8: `InvalidRequestError: Can't evaluate bulk DML statement` in `_insert_scheduled_flow_runs`)
passes every other test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.scheduled_flow import DEPLOYMENT_NAME, FLOW_NAME

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

CRON = "* * * * *"
# the first start migrates a fresh SQLite database: slow on 2 cores (DESIGN.md, MLOps)
SERVER_START_TIMEOUT_S = 150
WAIT_TIMEOUT_S = 60
PIPELINE_TIMEOUT_S = 600  # the next minute's tick, then every stage of the smoke pipeline on 2 busy cores


# SQLite's "database is locked" under a loaded CPU is transient: a WAL read transaction that turns into a
# write gets SQLITE_BUSY without waiting, and the server's service loop retries on its next tick
TRANSIENT_SQLITE_ERROR = "database is locked"
TRACEBACK = "Traceback (most recent call last):"


def raised_errors(log: str) -> list[str]:
    """The exception line of every traceback in `log`: the first unindented line after each header.

    A chained exception prints one traceback per link (sqlite3's error, then SQLAlchemy's wrapping it),
    so each link is judged on its own line rather than by counting strings. A traceback still being
    written (no exception line yet) is left for the next poll.
    """
    blocks = (block.splitlines()[1:] for block in log.split(TRACEBACK)[1:])
    firsts = (next((line for line in lines if line and not line[0].isspace()), None) for lines in blocks)
    return [line.strip() for line in firsts if line is not None]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen[bytes], grace_s: float = 20) -> None:
    """SIGTERM the process's group (it leads its own session), then SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def read_deployment(client: Any, name: str) -> Any:
    """The deployment ``name`` ("flow/deployment"), or None while no serving process has registered it yet."""
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name(name)
    except ObjectNotFound:
        return None


class Harness:
    """One real Prefect server and, once :meth:`serve` is called, one process serving the probe flow."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.server_log = tmp_path / "server.log"
        self.serve_log = tmp_path / "serve.log"
        self.processes: list[subprocess.Popen[bytes]] = []
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PREFECT_API_", "PREFECT_SERVER_DATABASE_", "PREFECT_PROFILE"))
        }
        self.env = {
            **env,
            "PREFECT_HOME": str(tmp_path / "prefect_home"),  # a fresh SQLite database in there
            "PREFECT_API_URL": self.api_url,
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
            "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_RUNS": "5",  # a daily cron gets five runs ahead, not three
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        }

    def _start(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            process = subprocess.Popen(
                args,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def start_server(self) -> None:
        server = self._start(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)], self.server_log
        )

        def healthy() -> bool:
            try:
                return httpx.get(f"{self.api_url}/health", timeout=2).json() is True
            except (httpx.HTTPError, ValueError):
                return False

        self.wait_for(healthy, "the server's health endpoint", SERVER_START_TIMEOUT_S, watch=[server])

    def serve(self, out_dir: Path, cron: str = CRON) -> subprocess.Popen[bytes]:
        return self._start([sys.executable, "-m", "tests.scheduled_flow", cron, str(out_dir)], self.serve_log)

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL ``process``, as a crash or a reboot ends it: a serving process cannot pause its schedule."""
        process.kill()
        process.wait()
        self.processes.remove(process)

    def serve_pipeline(self, project: Path) -> None:
        """``python -m pipelines.serve`` as the README gives it, on ``project`` (its params' schedule.cron)."""
        self.env["PATH"] = f"{BIN}{os.pathsep}{self.env['PATH']}"
        self.env.pop("MLFLOW_TRACKING_URI", None)  # the project's own sqlite registry
        self._start([sys.executable, "-m", "pipelines.serve", "--project-dir", str(project)], self.serve_log)

    def diagnostics(self) -> str:
        return f"--- server log ---\n{_tail(self.server_log)}\n--- serve log ---\n{_tail(self.serve_log)}"

    def assert_server_log_clean(self) -> None:
        """No service of the server raised (the broken scheduler logs a traceback at each tick)."""
        log = self.server_log.read_text(errors="replace") if self.server_log.exists() else ""
        assert "InvalidRequestError" not in log, f"the scheduler failed\n{self.diagnostics()}"
        unexplained = [error for error in raised_errors(log) if not error.endswith(TRANSIENT_SQLITE_ERROR)]
        assert not unexplained, f"a traceback in the server log: {unexplained}\n{self.diagnostics()}"

    def wait_for(
        self,
        probe: Callable[[], Any],
        what: str,
        timeout_s: float = WAIT_TIMEOUT_S,
        watch: list[subprocess.Popen[bytes]] | None = None,
    ) -> Any:
        """Poll ``probe`` until it returns something truthy; fail as soon as a process dies or the server
        logs a traceback, and after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for process in watch if watch is not None else self.processes:
                if process.poll() is not None:
                    pytest.fail(
                        f"{process.args[:3]} exited ({process.returncode}) while waiting for {what}\n"
                        f"{self.diagnostics()}"
                    )
            self.assert_server_log_clean()
            value = probe()
            if value:
                return value
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout_s} s waiting for {what}\n{self.diagnostics()}")

    def close(self) -> None:
        # the serving process first: on shutdown it pauses its schedule through the server
        for process in reversed(self.processes):
            _stop(process)


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
    h = Harness(tmp_path)
    try:
        h.start_server()
        yield h
    finally:
        h.close()


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


def test_the_served_pipeline_runs_on_its_schedule_and_registers_and_promotes_a_candidate(
    harness: Harness, tmp_path: Path
):
    """Issue 12 item 6: `python -m pipelines.serve` on a smoke project (lean: one zoo model, one searched size)
    whose schedule.cron fires every minute; the first run the server's scheduler makes (none started by hand)
    runs every DVC stage, registers the default model as a candidate and promotes it (the project has a
    signing key)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from edgesr.config import load_params, write_params
    from edgesr.registry.signing import init_keys
    from edgesr.registry.store import CANDIDATE, CHAMPION, Registry

    from .smoke_project import lean, make_smoke_project

    project = make_smoke_project(tmp_path / "project")
    params = lean(load_params(project / "params.yaml"))
    every_minute = params.model_copy(update={"schedule": params.schedule.model_copy(update={"cron": CRON})})
    write_params(every_minute, project / "params.yaml")
    init_keys(project / params.registry.keys_dir)
    harness.serve_pipeline(project)

    with temporary_settings(updates={PREFECT_API_URL: harness.api_url}), get_client(sync_client=True) as client:
        dep = harness.wait_for(
            lambda: read_deployment(client, "edgesr-pipeline/edgesr-scheduled"), "the served pipeline deployment"
        )
        assert [s.schedule.cron for s in dep.schedules] == [CRON]

        def first_finished_run():
            of_deployment = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[dep.id]))
            runs = client.read_flow_runs(flow_run_filter=of_deployment)
            done = [run for run in runs if run.state is not None and run.state.is_final()]
            return min(done, key=lambda run: run.expected_start_time) if done else None

        run = harness.wait_for(first_finished_run, "the first scheduled pipeline run to finish", PIPELINE_TIMEOUT_S)
        assert run.auto_scheduled and run.state.is_completed(), f"{run.state}\n{harness.diagnostics()}"

    registry = Registry(f"sqlite:///{project / 'mlflow.db'}")
    candidate = registry.by_alias(params.deploy.default_model, CANDIDATE)
    assert candidate is not None and str(candidate.version) == "1"
    champion = registry.by_alias(params.deploy.default_model, CHAMPION)
    assert champion is not None and str(champion.version) == "1"
    assert candidate.tags["promotion.decision"] == "promoted"


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
