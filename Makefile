# Two commands do all set-up on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv (CPU torch from constraints.txt) and install the package editable on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint system-deps clean

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

# Real photos for the tests come from Debian's darknet package (never committed to the repo).
system-deps:
	@bash scripts/install_system_deps.sh

# The demo's last step (the metric on real photos) reads Debian's darknet photos: installed here too.
demo: $(STAMP) system-deps
	$(BIN)/diffusers-spatial demo --out outputs/demo

test: $(STAMP) system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) outputs .pytest_cache
