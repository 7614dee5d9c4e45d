# Two entry points: `make example` runs the bundled example, `make test` runs the checks CI runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install example test lint bench

$(BIN)/rolloutctl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/rolloutctl

example: install
	./examples/run-calculator.sh

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
