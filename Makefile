# Entry points for a Debian 12 machine (as root).  See README.md.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup run sfu test test-unit test-integration lint bench bench-fuzz clean

setup:
	@scripts/setup.sh

# Whole system with local defaults: Redis, PostgreSQL, SFU node, coturn, control
# plane.  `make run DEV_ARGS=--https`: HTTPS on this machine's LAN address.
run: setup
	@$(PY) -m controlplane.cli dev $(DEV_ARGS)

# Local SFU only: Redis (unless REDIS_URL is set) and one SFU node.
sfu: setup
	@$(PY) -m controlplane.cli dev --only-sfu

# All tests; the fixtures start the real services they need.
test: setup
	@$(PY) -m pytest -q -ra $(PYTEST_ARGS)

test-unit: setup
	@$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-integration: setup
	@$(PY) -m pytest -q tests/integration $(PYTEST_ARGS)

# Static checks alone (the test command runs them too, in tests/unit/test_static_checks.py).
lint: setup
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy
	@$(VENV)/bin/lint-imports

# Benchmarks (see README.md, "Benchmarks"); join_latency.py runs against `make run`.
bench: setup
	@$(PY) bench/join_latency.py $(BENCH_ARGS)

# The longer fuzz run (the test command runs the same tests with a small budget).
bench-fuzz: setup
	@$(PY) bench/fuzz.py $(BENCH_ARGS)

clean:
	rm -rf .data test-artifacts
