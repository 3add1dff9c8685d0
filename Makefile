# Two commands a fresh machine (python3 + pip) can run: `make demo` and `make test`.
# Both create (or reuse) the virtual environment .venv from the hashed pins in install/:
# the demo needs only the runtime pins; the tests add the test tools and the benchmark harness's pins.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# --no-deps: every file in install/ is fully pinned (pip-compile), so pip never resolves a dependency itself. That is
# what makes the stock pip of `python3 -m venv` (23.2.1 with Python 3.11.7) work: in --require-hashes mode it refuses
# a pinned package's own `dep[extra]>=x` requirement as unpinned.
PIP := $(BIN)/pip install -q --disable-pip-version-check --require-hashes --no-deps
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed

.PHONY: demo test lint unit venv clean softhsm

venv: $(DEV)
	@$(MAKE) --no-print-directory softhsm || echo "make: continuing without SoftHSM2 (only tests/test_pkcs11.py needs it)" >&2

$(RUNTIME): install/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r install/requirements.txt
	$(BIN)/python -m pip check --disable-pip-version-check  # the pins are complete (nothing missing with --no-deps)
	touch $@

$(DEV): $(RUNTIME) install/requirements-dev.txt install/requirements-bench.txt pyproject.toml
	$(PIP) -r install/requirements-dev.txt
	$(PIP) -r install/requirements-bench.txt
	$(BIN)/python -m pip check --disable-pip-version-check
	# compat mode: a plain path entry; the default import-hook finder costs every command ~20 ms at start-up
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $@

demo: $(RUNTIME)
	$(BIN)/python scripts/demo.py

lint: $(DEV)
	$(BIN)/ruff check model_signing tests benchmarks scripts main.py
	$(BIN)/mypy

unit: $(DEV) softhsm
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# SoftHSM2 (Debian package softhsm2): the PKCS #11 token the HSM tests sign with (tests/test_pkcs11.py). A skipped
# HSM test fails CI, so `make test` installs it when it is missing and it can (root); otherwise it says how.
softhsm:
	@command -v softhsm2-util >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing SoftHSM2 (apt-get install softhsm2) for the PKCS #11 tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >/dev/null; \
	  else \
	    echo "make: SoftHSM2 is missing (softhsm2-util); install it: sudo apt-get install softhsm2" >&2; exit 1; \
	  fi; }
	@command -v softhsm2-util >/dev/null

test: lint unit

clean:
	rm -rf $(VENV) .venv-peer .pytest_cache .mypy_cache .ruff_cache
