# The two commands: `make pipeline` and `make test` (`make lint`: ruff and mypy). All create .venv and install the pinned set.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
export DO_NOT_TRACK := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_HOME := $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 180
export OPENVINO_TELEMETRY_ENABLED := 0

.PHONY: install pipeline test flow lint lock ui prefect-server serve clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0 uv==$(UV_VERSION)  # pip: the CPU torch wheel on disk
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.lock  # the pinned set: seconds, where pip takes minutes
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	$(BIN)/dvc config --global core.analytics false >/dev/null 2>&1 || true
	touch $(STAMP)

pipeline: install
	test -d .dvc || $(BIN)/dvc init -q $$(test -d .git || echo --no-scm)
	$(BIN)/dvc config core.analytics false
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

test: install  # one worker per test file (module-scoped servers and projects), in tests/conftest.py's order
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder tests

flow: install
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pipelines.flow

lint: install
	$(BIN)/ruff check src tests pipelines benchmarks
	$(BIN)/ruff format --check src tests pipelines benchmarks
	$(BIN)/mypy

ui: install
	@echo "open http://127.0.0.1:5000/#/experiments?workflowType=machine_learning (the runs tables, not the GenAI view)"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

prefect-server: install  # a real Prefect server, UI at http://127.0.0.1:4200, state in .prefect/ (telemetry off above)
	$(BIN)/prefect server start

serve: install  # the pipeline flow on schedule.cron of params.yaml against `make prefect-server` (CRON=... overrides)
	PREFECT_API_URL=http://127.0.0.1:4200/api $(BIN)/python -m pipelines.serve $(if $(CRON),--cron "$(CRON)")

lock:
	$(BIN)/pip freeze --exclude-editable | grep -v -E '^(torch|edgesr|uv)==' > requirements.lock.new && mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) .prefect mlflow.db mlruns
