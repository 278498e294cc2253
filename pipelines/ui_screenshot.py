"""A screenshot of the MLflow UI comparing pipeline runs side by side, taken by a real headless browser.

Starts ``mlflow ui`` on the project's registry (a free localhost port), picks the latest ``register``
runs (each carries one pipeline execution's PSNR per set, int8 drop, Mult-Adds and latency per device
profile, :mod:`edgesr.stages.register`), opens MLflow's compare-runs page on them in Debian's
``chromium`` (``apt-get install chromium``) and saves the picture the README shows:

    .venv/bin/python -m pipelines.ui_screenshot --out docs/mlflow_compare_runs.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

from mlflow import MlflowClient

CHROMIUM_FLAGS = [  # headless on a closed network: no GPU, no sandbox as root, no background connections
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"error: mlflow ui did not answer at {url} within {timeout_s:.0f} s")


def compare_url(base: str, experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's compare-runs page on ``run_ids`` (its hash route takes JSON lists), model-training view."""
    runs, experiments = quote(json.dumps(run_ids)), quote(json.dumps([experiment_id]))
    return f"{base}/#/compare-runs?runs={runs}&experiments={experiments}&workflowType=machine_learning"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite:///mlflow.db", help="backend store URI (default: %(default)s)")
    parser.add_argument("--experiment", default="edgesr")
    parser.add_argument("--runs", type=int, default=3, help="how many of the latest register runs (default: 3)")
    parser.add_argument("--out", type=Path, default=Path("docs/mlflow_compare_runs.png"))
    args = parser.parse_args()
    browser = shutil.which("chromium")
    if browser is None:
        raise SystemExit("error: chromium not found: install Debian's package (`apt-get install chromium`)")
    client = MlflowClient(tracking_uri=args.db)
    experiment = client.get_experiment_by_name(args.experiment)
    if experiment is None:
        raise SystemExit(f"error: no experiment {args.experiment!r} in {args.db}: run the pipeline first")
    runs = client.search_runs(
        [experiment.experiment_id], "tags.dvc_stage = 'register'", max_results=args.runs, order_by=["start_time DESC"]
    )
    if len(runs) < 2:
        raise SystemExit(f"error: {len(runs)} register run(s) in {args.db}: compare needs two pipeline runs")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", args.db, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_healthy(base, 120)
        url = compare_url(base, experiment.experiment_id, [run.info.run_id for run in reversed(runs)])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            subprocess.run(
                [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1500,2600",
                 "--virtual-time-budget=20000", f"--screenshot={args.out.resolve()}", url],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"{args.out}: {len(runs)} pipeline runs compared ({url})")


if __name__ == "__main__":
    main()
