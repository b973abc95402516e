# xrd-strain developer commands.  Each target bootstraps the virtual environment
# (.venv, pinned by requirements.lock) on a fresh machine, so one command does all setup.
#
#   make test        lint (ruff) and the fast test suite (what CI runs: .ci/run)
#   make lint        ruff check and ruff format --check (rules in pyproject.toml)
#   make test-slow   the slow tests only (long physics sweeps, training)
#   make demo        the main job: writes its results into out/
#   make bench       speed benchmarks (benchmarks/bench_*.py); figures go to BENCHMARKS.md
#   make postgres    PostgreSQL server binaries for the PostgreSQL tests (Debian, as root; else they skip)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Written once the environment is complete; redone when the pins or the package metadata change.
READY := $(VENV)/.bootstrapped

.PHONY: help lint test test-slow demo bench

help:
	@sed -n 's/^#   //p' Makefile

$(READY): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.lock
	$(PY) -m pip install --no-deps -e .
	touch $@

lint: $(READY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

test-slow: $(READY)
	$(PY) -m pytest -m slow

# --- demo recipe: this one line is the main job (the live demo replaces it when it lands) ---
DEMO = $(PY) -m xrd_strain_plugin.cli demo --out out

demo: $(READY)
	mkdir -p out
	$(DEMO)

bench: $(READY)
	@set -e; found=0; for script in benchmarks/bench_*.py; do \
	  [ -e "$$script" ] || continue; found=1; echo "== $$script"; $(PY) "$$script"; done; \
	  [ $$found = 1 ] || { echo "no benchmarks/bench_*.py yet" >&2; exit 1; }

# The PostgreSQL tests start a throwaway server from these binaries and skip, saying why, without them.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
	  { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	    apt-get update -q && apt-get install -y -q --no-install-recommends postgresql; } || \
	  echo "make postgres: no PostgreSQL server here and none installable (Debian, as root: apt-get install postgresql); the PostgreSQL tests will be skipped" >&2
