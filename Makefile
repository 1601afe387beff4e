# The two quick-start commands: `make run` and `make test`. Everything else here serves them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
STATE ?= .state

# The quick start runs against the bundled example: its desired state, its live files, SQLite history.
EXAMPLE_ENV := RECONCILER_DESIRED_DIR=examples/desired \
	RECONCILER_FILE__ROOTS='["examples/live"]' \
	RECONCILER_DATABASE_URL=sqlite:///$(STATE)/reconciler.db

.PHONY: install run plan test services lint typecheck layers unit clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "reconciler needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# The compiled comparison walk (mypyc; plain Python when it cannot be built), again whenever walk.py changes.
NATIVE := $(VENV)/.native-$(shell cksum < reconciler/diff/walk.py | cut -d' ' -f1)

$(NATIVE): $(STAMP)
	$(BIN)/python -m reconciler.diff.native
	@rm -f $(VENV)/.native-*
	@touch $@

install: $(STAMP) $(NATIVE)

## Install, migrate the example's SQLite history and run the daemon (dry-run) on examples/.
run: install
	@mkdir -p $(STATE)
	$(EXAMPLE_ENV) $(BIN)/reconciler db upgrade
	$(EXAMPLE_ENV) exec $(BIN)/reconciler run

## One dry-run pass over the example, printed as a table.
plan: install
	@mkdir -p $(STATE)
	$(EXAMPLE_ENV) $(BIN)/reconciler db upgrade
	$(EXAMPLE_ENV) $(BIN)/reconciler plan; test $$? -ne 1

## Install and run everything CI runs: lint, format check, types, layer contracts, the test suite.
test: install services lint typecheck layers unit

## The servers integration tests use (PostgreSQL up; Prometheus installed from Debian's packages as root).
services:
	@bash .ci/services

lint: install
	$(BIN)/ruff check reconciler tests bench migrations
	$(BIN)/ruff format --check reconciler tests bench migrations

typecheck: install
	$(BIN)/mypy

layers: install
	$(BIN)/lint-imports

unit: install
	$(BIN)/pytest

clean:
	rm -rf $(VENV) $(STATE) .mypy_cache .ruff_cache .pytest_cache build
	rm -f reconciler/diff/_walk_native*
