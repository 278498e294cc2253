"""A real `prefect server start` for tests (tests/test_prefect_server.py, tests/test_pipeline.py): started
on a free port with a fresh SQLite database, its scheduler's loop shortened, and the processes that serve
flows against it; waits that fail as soon as a process dies or the server logs a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CRON = "* * * * *"  # the probe flow's default schedule: every minute
# the first start migrates a fresh SQLite database: slow on 2 cores (DESIGN.md, MLOps)
SERVER_START_TIMEOUT_S = 150
WAIT_TIMEOUT_S = 120  # a poll: on a slow day the server answered through SQLite "database is locked" retries


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


@contextmanager
def prefect_server(tmp_path: Path) -> Iterator[Harness]:
    """A started server (logs and database under ``tmp_path``); on exit the serving processes stop, then it."""
    harness = Harness(tmp_path)
    try:
        harness.start_server()
        yield harness
    finally:
        harness.close()
