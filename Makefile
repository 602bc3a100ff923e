PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench soak clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,bench,ml]'
	touch $(STAMP)

DEMO_DIR ?= var/demo

run: $(STAMP)
	$(BIN)/otai demo setup --dir $(DEMO_DIR)
	OTAI_DEMO_DIR=$(DEMO_DIR) $(BIN)/otai run examples/ticket-routing.yml

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench examples scripts
	$(BIN)/ruff check src tests bench examples scripts
	$(BIN)/mypy src

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/python scripts/soak.py $(if $(ROUNDS),--rounds $(ROUNDS))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
