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

# Until the runtime lands: decode the bundled sample captures of every codec.
demo: setup
	@for codec in teltonika gt06 evb1; do \
		echo "== $$codec: codecs/samples/$$codec.hex"; \
		$(BIN)/gateway decode --codec $$codec --file codecs/samples/$$codec.hex || exit 1; \
	done

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

schema: setup
	$(BIN)/gateway schema --write config/schema

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
