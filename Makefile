# The two commands of the README, and what they need. Every target is safe to
# rerun; nothing is installed twice.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_TAG ?= nbs2i-demo/sample-notebooks:latest

.PHONY: demo test venv engine base-image browser lint unit bench clean

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

# Debian's chromium, for the end-to-end browser test (tests/engine/test_demo_browser.py).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "make browser: install Debian's chromium package (as root: apt-get install -y chromium)" >&2; exit 1; fi; }

lint: venv
	$(BIN)/ruff check .

unit: venv
	$(BIN)/pytest -m "not engine"

test: venv base-image browser lint
	$(BIN)/pytest

demo: venv base-image
	bash scripts/demo $(DEMO_TAG)

bench: venv base-image
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
