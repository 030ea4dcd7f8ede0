# `make demo` and `make test` work on a fresh clone: each sets up what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit bench schema clean

setup: $(STAMP)

# Reinstall only when the dependency list changes; the project itself is an editable install.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The gateway on its local default (config/local.toml) with a 1,000-device simulated fleet.
demo: setup
	$(BIN)/python -m gateway.demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q

test: lint typecheck unit

bench: setup
	$(BIN)/python bench/decode.py
	$(BIN)/python bench/ingest.py

schema: setup
	$(BIN)/gateway schema --write config/schema

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
