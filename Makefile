# Two entry points for a fresh machine with Python 3.11 and pip:
#   make train   - qtrack train on the embedded synthetic market (offline)
#   make test    - the test suite (one pytest worker per core)
# For developers: make test-fast (unit tests and the quick end-to-end ones), make lint, make mutants.
# Both create .venv on first use and reuse it while pyproject.toml and constraints.txt are unchanged.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test test-fast lint mutants bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/qtrack train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadscope $(ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadscope -m "not slow" $(ARGS)

# Mutation testing of the modules that hold the rules ([tool.mutmut] in pyproject.toml; docs/testing.md).
mutants: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,mutation]'
	rm -rf mutants
	$(BIN)/mutmut run $(ARGS) || true
	$(BIN)/mutmut results

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts

bench: $(STAMP)
	$(BIN)/python scripts/bench_train.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache mutants
