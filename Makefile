# Two entry points for a fresh machine with Python 3.11 and pip:
#   make train   - qtrack train on the embedded synthetic market (offline)
#   make test    - the test suite (one pytest worker per core)
# For developers: make test-fast (unit tests and the quick end-to-end ones), make lint, make mutants.
# Both create .venv on first use and reuse it while pyproject.toml and constraints.txt are unchanged.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test test-fast lint mutants bench clean smoke-py312

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,torch]'
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
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python scripts/bench_train.py $(ARGS)

clean:
	rm -rf $(VENV) .venv312 .pytest_cache mutants

# Python 3.12: a fresh .venv312 from the same pins, then `qtrack train` on a tiny market in a temporary
# folder. .ci/run runs it before the suite, so every CI proves 3.12 as well as 3.11.
PY312 ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python; do \
  $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo $$p; break; }; done)
smoke-py312:
	@test -n "$(PY312)" || { echo "smoke-py312: no python3.12 found"; exit 1; }
	rm -rf .venv312 && $(PY312) -m venv .venv312
	.venv312/bin/python -m pip install --quiet --upgrade pip
	.venv312/bin/python -m pip install --quiet -c constraints.txt .
	tmp=$$(mktemp -d) && cd $$tmp && QTRACK_DATA_ROOT=$$tmp/data $(CURDIR)/.venv312/bin/qtrack train \
	  dataset.synthetic.symbols=30 dataset.synthetic.days=300 model.num_boost_round=30 >/dev/null \
	  && $(CURDIR)/.venv312/bin/python -c "import sys; assert sys.version_info[:2] == (3, 12); print('python', sys.version.split()[0], 'ok')"
