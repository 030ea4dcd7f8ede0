# `make demo` and `make test` work on a fresh clone: each sets up what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup system-packages demo demo-kinesis image test lint typecheck unit bench schema clean

setup: $(STAMP) $(NODE_STAMP) system-packages

# Debian packages the tests run for real: prometheus and promtool (tests/test_prometheus.py),
# mosquitto and mosquitto-clients (MQTT listener and bridge tests). apt-get runs only when one
# of their commands is missing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
SYSTEM_COMMANDS := promtool mosquitto mosquitto_pub mosquitto_sub mosquitto_passwd
system-packages:
	@for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null || missing=1; done; \
	[ -z "$$missing" ] || { $(SUDO) apt-get update -qq && $(SUDO) env \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		prometheus mosquitto mosquitto-clients; }

# Reinstall only when the dependency list changes; the project itself is an editable install.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# kinesalite (the Kinesis emulator the tests and demo-kinesis use), exactly as locked. npm ci
# wipes node_modules, so it runs only when the lock changed. --ignore-scripts: leveldown's
# install script serves kinesalite --path (LevelDB), which the in-memory emulator never loads.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $(NODE_STAMP)

# The gateway on its local default (config/local.toml) with a 1,000-device simulated fleet.
demo: setup
	$(BIN)/python -m gateway.demo

# The same fleet into Kinesis streams on a local kinesalite (config/kinesis-local.toml), tailed.
demo-kinesis: setup
	$(BIN)/python -m gateway.demo --kinesis

# The container image (needs a Docker engine; these build machines have none).
image:
	docker build -t ev-gateway .

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# Four workers: most tests wait on real processes, not the CPU (tests run alone with plain pytest).
unit: setup
	$(BIN)/pytest -q -n 4

test: lint typecheck unit

bench: setup
	$(BIN)/python bench/decode.py
	$(BIN)/python bench/mqtt_codec.py
	$(BIN)/python bench/kinesis_agg.py
	$(BIN)/python bench/kinesis.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/mqtt.py
	$(BIN)/python bench/bridge.py

schema: setup
	$(BIN)/gateway schema --write config/schema

clean:
	rm -rf $(VENV) node_modules .mypy_cache .pytest_cache .ruff_cache build *.egg-info
