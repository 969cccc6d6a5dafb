# Delegated Admin Monitor: developer entry points.
#   make setup  - idempotent installer (.venv, node_modules with Azurite, .venv-tools, Debian chromium)
#   make test   - lint, type-check and every test (Azurite and the emulator are started by the tests)
#   make demo   - a generated estate through the whole product, then the portal on http://127.0.0.1:7071
#   make bench  - benchmarks against Azurite and the emulator (docs/performance.md)
#   make soak   - long fault, kill and concurrency runs
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .venv-tools
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)

.PHONY: help setup lock test lint typecheck demo bench soak clean chromium

help: ## this list
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z]+):.*## (.*)/  make \1\t\2/' | expand -t 18

setup: $(VENV)/.installed node_modules/.installed $(TOOLS)/.installed chromium ## install everything (idempotent): .venv, Azurite, tools, Chromium

# The locks: every package of each environment, pinned with its hashes (pip checks them on install;
# Azure's build installs requirements.txt the same way). `make lock` regenerates them from the .in
# files, keeping the pinned versions it can (uv reads the existing lock as its preferences), with the
# extras packages ask for on their lines (pip in hash-checking mode would resolve a bare extra anew).
LOCK = $(TOOLS)/bin/uv pip compile --generate-hashes --no-strip-extras --python-version 3.11.7 --python-platform x86_64-unknown-linux-gnu --quiet

lock: $(TOOLS)/.installed ## regenerate the hashed locks requirements*.txt from requirements*.in
	$(LOCK) requirements.in -o requirements.txt
	$(LOCK) requirements-dev.in -c requirements.txt -o requirements-dev.txt
	$(LOCK) requirements-tools.in -o requirements-tools.txt

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(TOOLS)/.installed: requirements-tools.txt
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-tools.txt
	@touch $@

# Chromium for the browser tests, and a CJK font so that Japanese pages are really rendered (without
# one, every kana and kanji is a box and a broken layout goes unseen).
chromium:
	@{ command -v chromium >/dev/null 2>&1 && fc-list 2>/dev/null | grep -q "Noto Sans CJK"; } || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; }

lint: $(VENV)/.installed ## ruff check and ruff format --check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(VENV)/.installed ## mypy
	$(PY) -m mypy shared functions function_app.py tools

# The tests of everything that reads a clock (timers, CLI, evaluation, removals, GDAP, mail, rules) run a
# second time with this process's clock a year ahead (Azurite and the emulator keep theirs): a test or
# a code path that reads the host's calendar fails there. The rest (browser, chaos, infra, bench) runs once.
YEAR_AHEAD := tests/test_clock.py tests/test_rules.py tests/test_functions_enforcement.py tests/test_sharding.py \
	tests/test_enforcement.py tests/test_activity_evidence.py tests/test_removal_safety.py tests/test_cli.py \
	tests/test_notifications.py tests/test_gdap.py tests/test_identity.py tests/test_ratelimit.py

# Test modules run in TEST_WORKERS processes at once (pytest-xdist), each module whole in one of them
# (its module fixtures, a portal or a generated estate, are built once); each process starts its own
# Azurite and emulator. CI has two cores.
TEST_WORKERS ?= 2

test: setup lint typecheck ## lint, type-check and every test, then the clock tests a year ahead
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile
	TEST_HOST_CLOCK_AHEAD_DAYS=365 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -q -p no:cacheprovider -m "not browser and not slow" $(YEAR_AHEAD)

# The demo needs no browser: it installs the runtime and Azurite only.
demo: $(VENV)/.installed node_modules/.installed ## a generated estate through the product, then the portal on 127.0.0.1, port DEMO_PORT (default 7071)
	$(PY) -m tools.demo

# Benchmarks (never timed tests): writes docs/performance.md and docs/performance.json.
bench: setup ## benchmarks (docs/performance.md)
	$(PY) -m tools.bench

# Long fault/kill/concurrency runs kept out of `make test`.
soak: setup ## long fault, kill and concurrency runs
	$(PY) -m pytest -m soak

clean: ## remove generated files
	rm -rf .demo .bench test-artifacts .pytest_cache .mypy_cache .ruff_cache
