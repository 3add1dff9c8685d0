# Two commands a fresh machine (python3 + pip) can run: `make demo` and `make test`.
# Each creates (or reuses) the virtual environment .venv from the hashed pins in install/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit venv clean

venv: $(STAMP)

$(STAMP): install/requirements.txt install/requirements-dev.txt install/requirements-bench.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r install/requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r install/requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check --require-hashes -r install/requirements-bench.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check model_signing tests benchmarks scripts main.py
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint unit

clean:
	rm -rf $(VENV) .venv-peer .pytest_cache .mypy_cache .ruff_cache
