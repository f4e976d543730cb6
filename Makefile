# Two entry points for a fresh machine with Python 3.11 and pip:
#   make train   - qtrack train on the embedded synthetic market (offline)
#   make test    - the test suite (one pytest worker per core)
# Both create .venv on first use and reuse it while pyproject.toml and constraints.txt are unchanged.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/qtrack train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadscope $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts

bench: $(STAMP)
	$(BIN)/python scripts/bench_train.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
