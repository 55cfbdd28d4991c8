# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo fleet test test-versions lint bench clean

# The environment is rebuilt when pyproject.toml changes.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[apscheduler,cron,cli,report,prometheus]'
	touch $@

# The dev dependency group (PEP 735) needs pip >= 25.1 for --group.
$(BIN)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $@ $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/python examples/monitoring_demo.py
	@echo
	@echo "--- the same collectors under APScheduler (examples/apscheduler_demo.py) ---"
	$(BIN)/python examples/apscheduler_demo.py
	@echo
	@echo "--- what the store says (gecko-otel status gecko_otel_demo.db) ---"
	$(BIN)/gecko-otel status gecko_otel_demo.db
	@echo
	$(BIN)/gecko-otel report gecko_otel_demo.db -o report.html
	@echo "Open report.html in a browser. For the live page, run:"
	@echo "  $(BIN)/gecko-otel serve gecko_otel_demo.db   # then open http://127.0.0.1:9465/"

# Prometheus, Alertmanager and the demo collectors on loopback with collector-config/ (Ctrl-C stops).
fleet: $(BIN)/.installed
	PYTHON=$(BIN)/python collector-config/run-local.sh

# The linters and the docs build, then the whole suite (docs examples included): CI runs exactly this.
test: $(BIN)/.installed-dev
	$(MAKE) --no-print-directory lint
	$(BIN)/python -m pytest

# The suite on the other supported Pythons (noxfile.py): 3.10, 3.12 and 3.13, without
# the slow tests. CI runs it after `make test`.
test-versions: $(BIN)/.installed-dev
	$(BIN)/nox --session quick

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples conftest.py noxfile.py
	$(BIN)/ruff format --check src tests benchmarks examples conftest.py noxfile.py
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The benchmarks' peers (Logfire, Sentry) come from the bench dependency group.
$(BIN)/.installed-bench: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet --group bench
	touch $@

bench: $(BIN)/.installed-bench
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/health.py
	$(BIN)/python benchmarks/scheduled.py
	$(BIN)/python benchmarks/import_time.py
	$(BIN)/python benchmarks/peers.py
	$(BIN)/python benchmarks/store.py --quick

clean:
	rm -rf $(VENV) .nox build dist site src/*.egg-info .pytest_cache .mypy_cache .ruff_cache report.html gecko_otel_demo.db gecko_otel_demo.db-wal gecko_otel_demo.db-shm
