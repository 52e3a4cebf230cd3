# Baton: `make run` starts the system on the embedded default; `make test` runs every test.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PACKAGES := -e shared -e services/lead-ingest -e services/scoring -e services/handoff -e services/metrics
# Prefix for commands that need the local Kafka and PostgreSQL: the endpoints `make infra` started or reused.
INFRA_ENV := BATON_TEST_KAFKA_BOOTSTRAP="$$(deploy/local/kafka.sh bootstrap single)" BATON_TEST_POSTGRES_URL="$$(deploy/local/postgres.sh url)"

.PHONY: install run demo test test-unit test-integration test-e2e lint format asyncapi infra infra-stop lock bench clean

$(STAMP): requirements.lock requirements-dev.txt shared/pyproject.toml services/*/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -r requirements-dev.txt $(PACKAGES)
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/baton run

demo: install
	$(BIN)/baton demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

asyncapi: install
	$(BIN)/python -m baton.asyncapi docs/asyncapi.json

infra:
	deploy/local/postgres.sh start
	deploy/local/kafka.sh start single

infra-stop:
	-deploy/local/kafka.sh stop single
	-deploy/local/postgres.sh stop

test: lint infra
	command -v chromium >/dev/null || apt-get install -y chromium || (apt-get update && apt-get install -y chromium)
	$(INFRA_ENV) $(BIN)/pytest

test-unit: install
	$(BIN)/pytest tests/unit

bench: install infra
	command -v wrk >/dev/null || apt-get install -y wrk || (apt-get update && apt-get install -y wrk)
	$(INFRA_ENV) $(BIN)/python -m bench --json bench/results.json --markdown bench/results.md

lock: install
	{ echo "# Exact versions of every third-party package Baton installs (make lock regenerates it)."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -vE '^(-e|#)' | grep -viE '^baton'; } > requirements.lock

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
