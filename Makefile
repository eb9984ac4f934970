# The two commands a fresh machine needs:
#   make build   set up the compiler and run `halogen build` on models.d/
#   make test    set up everything (system packages, llama-server, the model) and run every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# pytest-xdist workers for `make test`: most tests wait on servers and processes, so two share
# two cores well (9 min 18 s on one worker, 5 min 15 s on two, on the same machine).
TEST_WORKERS ?= 2

.PHONY: build check test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps re-install when pyproject.toml changes.
$(VENV)/.build: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[build]'
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.build

build: $(VENV)/.build
	$(BIN)/halogen build

check: $(VENV)/.build
	$(BIN)/halogen validate
	$(BIN)/halogen build --check

lint: $(VENV)/.test
	$(BIN)/ruff check halogen tests bench
	$(BIN)/ruff format --check halogen tests bench
	$(BIN)/mypy

test: $(VENV)/.test
	scripts/setup-system
	scripts/fetch-llama-server
	scripts/fetch-smollm2
	$(MAKE) --no-print-directory lint
	$(BIN)/halogen build --check
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

$(VENV)/.bench: pyproject.toml $(VENV)/.test
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

bench: $(VENV)/.bench
	scripts/fetch-llama-server
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
