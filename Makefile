# The two commands of the README, and what they need. Every target is safe to
# rerun; nothing is installed twice.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_TAG ?= nbs2i-demo/sample-notebooks:latest

.PHONY: demo test venv engine base-image lint unit bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/.installed

engine:
	bash scripts/ensure-engine

base-image: engine
	bash scripts/ensure-base-image debian:bookworm-slim

lint: venv
	$(BIN)/ruff check .

unit: venv
	$(BIN)/pytest -m "not engine"

test: venv base-image lint
	$(BIN)/pytest

demo: venv base-image
	bash scripts/demo $(DEMO_TAG)

bench: venv base-image
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
