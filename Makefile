# Two commands on a fresh machine (each sets up what it needs):
#   make run    the main job: synth every environment offline, policy and lint summary
#   make test   every gate: format, lint, types, tests (policy packs, scanners, snapshots), CLI synth
#
# Needs Python >= 3.11 and Node >= 20; everything else is installed into .venv, .venv-checkov and
# node_modules from pinned versions. No AWS account or credentials are used.

PYTHON ?= python3
VENV := .venv
CHECKOV_VENV := .venv-checkov
BIN := $(VENV)/bin

# Offline and quiet: no AWS credentials or lookups, no CLI telemetry or notices, one OpenMP thread
# (two threads are 5-8x slower on 2-core machines).
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true
export OMP_NUM_THREADS := 1
export PATH := $(CURDIR)/$(BIN):$(CURDIR)/node_modules/.bin:$(PATH)
CDK := cdk --no-notices

.PHONY: run test check format lint types pytest synth setup clean accepted-findings feature-group-lock \
	endpoint-variant-lock cost-table

run: setup
	$(BIN)/python -m scripts.main

test: check

check: setup format lint types pytest synth
	@echo "All gates passed."

format:
	$(BIN)/ruff format --check .

lint:
	$(BIN)/ruff check .

types:
	$(BIN)/mypy .

pytest:
	$(BIN)/pytest

# The pinned CDK CLI synthesizes every environment, exactly as a deploy would.
synth:
	$(CDK) synth --quiet >/dev/null
	@echo "cdk synth: every environment synthesized to cdk.out"

setup: $(VENV)/.installed $(CHECKOV_VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt training_code/requirements.txt inference_code/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' || (echo "Node >= 20 is required" && exit 1)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache .local

# Rewrites the README's table of accepted policy findings from the code (a test keeps them equal).
accepted-findings: setup
	$(BIN)/python -m scripts.accepted_findings

# Records the feature groups' create-only properties after an intended change (a test keeps them equal;
# synth refuses a change that would replace a feature group unless config allows it).
feature-group-lock: setup
	$(BIN)/python -m scripts.feature_group_lock

# Records the endpoints' autoscaled variants after a deploy (a test keeps them equal; synth refuses
# removing such a variant or changing its instance type while it is registered for autoscaling).
endpoint-variant-lock: setup
	$(BIN)/python -m scripts.endpoint_variant_lock

# Rewrites the README's table of each environment's fixed monthly cost from config and
# config/unit_prices.json (a test keeps them equal).
cost-table: setup
	$(BIN)/python -m scripts.cost_table
