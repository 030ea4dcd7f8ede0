# `make demo` and `make test` work on a fresh clone: each sets up what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
NODE_STAMP := node_modules/.installed
BENCH_VENV := .bench-venv
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: setup compiled pure lock system-packages demo demo-kinesis image test lint typecheck unit bench chaos schema clean

setup: $(TEST_STAMP) $(NODE_STAMP) system-packages compiled

# The parser's hot modules compiled with mypyc, each .so beside its .py (issue 17; the list is in
# mypyc_build.py). Compiled again only when a parser source changed (the last build is kept in
# build/mypyc); without a C compiler or the Python headers it says so and the parser runs pure.
# While editing parser/, either run this after each change or `make pure`: Python imports the
# .so before the .py (tests/conftest.py refuses to run a suite over a stale build).
compiled: $(TEST_STAMP)
	$(BIN)/python mypyc_build.py

# The same sources as pure Python: removes the compiled modules (make setup puts them back).
pure:
	$(BIN)/python mypyc_build.py --remove

# Debian packages the tests run for real: prometheus and promtool (tests/test_prometheus.py),
# mosquitto and mosquitto-clients (MQTT listener and bridge tests), fiu-utils (fiu-run and
# fiu-ctrl inject write errors into a running gateway). apt-get runs only when one of their
# commands is missing.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
SYSTEM_COMMANDS := promtool mosquitto mosquitto_pub mosquitto_sub mosquitto_passwd fiu-run fiu-ctrl
system-packages:
	@for c in $(SYSTEM_COMMANDS); do command -v $$c >/dev/null || missing=1; done; \
	[ -z "$$missing" ] || { $(SUDO) apt-get update -qq && $(SUDO) env \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		prometheus mosquitto mosquitto-clients fiu-utils; }

# Every Python package comes from constraints.txt, the lock of what was tested: a fresh machine
# installs exactly those versions, and an upgrade is a deliberate commit (make lock). The
# runtime alone is what the demo needs; the test extras come on top for the suite.
$(RUN_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(TEST_STAMP)

# Re-resolve every dependency in a scratch venv and write the new lock (review the diff).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[test]'
	{ echo '# Every Python package a fresh machine installs, direct and transitive, exactly as tested.'; \
	  echo '# make setup installs with -c constraints.txt; regenerate deliberately with make lock.'; \
	  echo "pip==$$(.lock-venv/bin/python -m pip --version | cut -d' ' -f2)"; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable; } > constraints.txt
	rm -rf .lock-venv

# kinesalite (the Kinesis emulator the tests and demo-kinesis use), exactly as locked. npm ci
# wipes node_modules, so it runs only when the lock changed. --ignore-scripts: leveldown's
# install script serves kinesalite --path (LevelDB), which the in-memory emulator never loads.
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --ignore-scripts
	touch $(NODE_STAMP)

# The gateway on its local default (config/local.toml) with a 1,000-device simulated fleet.
# Only what the demo runs: the runtime packages, no test tools, npm or Debian packages.
demo: $(RUN_STAMP)
	$(BIN)/python -m gateway.cli.demo

# The same fleet into Kinesis streams on a local kinesalite (config/kinesis-local.toml), tailed.
demo-kinesis: $(RUN_STAMP) $(NODE_STAMP)
	$(BIN)/python -m gateway.cli.demo --kinesis

# The container image (needs a Docker engine; these build machines have none).
image:
	docker build -t ev-gateway .

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

# Four workers: most tests wait on real processes, not the CPU (tests run alone with plain pytest).
# The suite runs on both builds (issue 17): pure Python first, then compiled, which is what the
# tree is left with (an interrupted run is put right by the next: each pass installs its build).
# tests/test_mypyc_build.py fails a pass that imports another build than EXPECT_PARSER_BUILD.
# The pure pass leaves out the 3-minute chaos run (tests/test_chaos.py), which runs compiled.
unit: setup
	$(BIN)/python mypyc_build.py --remove
	EXPECT_PARSER_BUILD=pure $(BIN)/pytest -q -n 4 --ignore=tests/test_chaos.py
	$(BIN)/python mypyc_build.py
	if $(BIN)/python mypyc_build.py --installed; then \
		EXPECT_PARSER_BUILD=compiled $(BIN)/pytest -q -n 4; \
	else echo "no compiled build here: the suite ran pure only"; fi

test: lint typecheck unit

# Issue 17's table (bench/table.py): the benches in turn, about 15 minutes, then every measure
# against its same-run baseline and aim; also written with the machine to bench/results/perf.md.
# Each bench runs alone too (.venv/bin/python bench/<name>.py --help).
bench: setup $(BENCH_STAMP)
	$(BIN)/python bench/table.py --amqtt-python $(BENCH_VENV)/bin/python \
		--markdown bench/results/perf.md

# amqtt, the third broker bench/mqtt.py compares with, is no dependency of the project: it gets a
# venv of its own, with uvloop, at the versions of bench/amqtt-constraints.txt.
$(BENCH_STAMP): bench/amqtt-constraints.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -c bench/amqtt-constraints.txt amqtt uvloop
	touch $(BENCH_STAMP)

# The chaos run (bench/chaos.py, issue 16): a seeded fault schedule against the real gateway,
# fleet, kinesalite, mosquitto and moto, then a checker of what devices saw ACKed against what
# the journal and Kinesis hold. About 3 minutes; LONG=1: 30 minutes. Root: it mounts a tmpfs.
chaos: setup
	$(BIN)/python bench/chaos.py $(if $(LONG),--long,--short)

schema: setup
	$(BIN)/gateway schema --write config/schema

clean:
	rm -rf $(VENV) .lock-venv $(BENCH_VENV) node_modules .mypy_cache .pytest_cache .ruff_cache build *.egg-info
	find parser -name '*.so' -delete
