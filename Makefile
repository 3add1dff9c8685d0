# Two commands a fresh machine (python3 + pip) can run: `make demo` and `make test`.
# Both create (or reuse) the virtual environment .venv from the hashed pins in install/:
# the demo needs only the runtime pins; the tests add the test tools and the benchmark harness's pins.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q --disable-pip-version-check --require-hashes
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed

.PHONY: demo test lint unit venv clean

venv: $(DEV)

$(RUNTIME): install/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r install/requirements.txt
	touch $@

$(DEV): $(RUNTIME) install/requirements-dev.txt install/requirements-bench.txt pyproject.toml
	$(PIP) -r install/requirements-dev.txt
	$(PIP) -r install/requirements-bench.txt
	# compat mode: a plain path entry; the default import-hook finder costs every command ~20 ms at start-up
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $@

demo: $(RUNTIME)
	$(BIN)/python scripts/demo.py

lint: $(DEV)
	$(BIN)/ruff check model_signing tests benchmarks scripts main.py
	$(BIN)/mypy

unit: $(DEV)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint unit

clean:
	rm -rf $(VENV) .venv-peer .pytest_cache .mypy_cache .ruff_cache
