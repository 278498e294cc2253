"""A tiny flow that tests/test_prefect_server.py serves on a cron schedule against a real Prefect server.

Run as ``python -m tests.scheduled_flow CRON OUT_DIR`` with ``PREFECT_API_URL`` set: through
``pipelines.serve.serve_on_schedule``, as the pipeline is served, it drops the missed ticks, registers the
deployment ``edgesr-schedule-probe/probe-cron`` and polls for its scheduled runs; each run writes the file
``OUT_DIR/<its flow run id>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from prefect import flow, runtime

from pipelines.serve import serve_on_schedule

FLOW_NAME = "edgesr-schedule-probe"
DEPLOYMENT_NAME = "probe-cron"


@flow(name=FLOW_NAME)
def probe(out_dir: str) -> str:
    """Write the file ``out_dir/<this flow run's id>`` and return the id."""
    run_id = str(runtime.flow_run.id)
    (Path(out_dir) / run_id).write_text(f"{FLOW_NAME} ran\n")
    return run_id


if __name__ == "__main__":
    cron, out_dir = sys.argv[1], sys.argv[2]
    serve_on_schedule(probe, DEPLOYMENT_NAME, cron, parameters={"out_dir": out_dir})
