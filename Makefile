# Two entry points: `make example` runs the bundled example, `make test` runs the checks CI runs.
# The example gets a virtual environment of its own with the runtime only (no dev extras),
# installed by uv, so it is ready in under a minute; `make install` (the tests, the linters)
# installs `.[dev]` with pip.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXAMPLE_VENV ?= .venv-example

.PHONY: install example example-install test lint bench

$(BIN)/rolloutctl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/rolloutctl

# uv (from PyPI, into the example's venv) downloads and installs the runtime's wheels in
# parallel: a fraction of the time pip takes for the same set.
$(EXAMPLE_VENV)/bin/rolloutctl: pyproject.toml
	$(PYTHON) -m venv $(EXAMPLE_VENV)
	$(EXAMPLE_VENV)/bin/pip install --quiet --disable-pip-version-check uv
	$(EXAMPLE_VENV)/bin/uv pip install --quiet --python $(EXAMPLE_VENV)/bin/python -e .
	touch $@

example-install: $(EXAMPLE_VENV)/bin/rolloutctl

example: example-install
	ROLLOUT_VENV=$(EXAMPLE_VENV) ./examples/run-calculator.sh

lint: install
	$(BIN)/ruff check operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Two pytest workers sharing out the tests (tests use free loopback ports, their own
# temporary directories and a kubeconfig per process).
test: lint
	$(BIN)/pytest -q -n 2 --dist load

bench: install
	$(BIN)/python bench/run_all.py
