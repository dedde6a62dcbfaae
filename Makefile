# Two commands: `make local` (set up, deploy the default into a local AWS emulator) and `make test` (set up, test).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true

.PHONY: setup local test lint synth clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@echo "setting up $(VENV) from the pinned requirements (first time: minutes; log: $(VENV)/setup.log) ..."
	@$(PYTHON) -m venv $(VENV)
	@( $(PY) -m pip install --quiet --upgrade pip && \
	   $(PY) -m pip install --quiet -r requirements-dev.txt && \
	   $(PY) -m pip install --quiet --no-deps -e . ) > $(VENV)/setup.log 2>&1 || { tail -25 $(VENV)/setup.log; exit 1; }
	@touch $@

node_modules/.installed: package.json package-lock.json
	@echo "installing the pinned CDK CLI (npm ci) ..."
	@npm ci --no-audit --no-fund --loglevel=error >/dev/null  # errors still reach stderr
	@touch $@

setup: $(VENV)/.installed node_modules/.installed

local: setup
	@$(PY) scripts/deploy_local.py $(ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

test: lint
	$(PY) -m pytest -n auto --maxprocesses=4  # one process per core, at most 4 (pytest-xdist)

synth: setup
	node_modules/.bin/cdk synth -q $(ARGS)

clean:
	rm -rf $(VENV) node_modules cdk.out local model_code/*/ model_code/*.tar.gz
