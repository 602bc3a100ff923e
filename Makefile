PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

# One stamp per install, so that each target installs only what it needs and switching
# targets installs what is missing:
#   run    the package and its dependencies (scikit-learn included), nothing else
#   test   + the test extra and the ml extra (transformers, torch's CPU build), for the
#          tests and the linters; the name .installed is kept for the full developer install
#   bench  + the bench extra (the scheduler it is compared with) and the ml extra (for the
#          transformers latency it reports)
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed
STAMP_BENCH := $(VENV)/.installed-bench

.PHONY: run test lint bench soak clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# Every extra install includes the base one: its stamp is renewed too.
$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,ml]'
	touch $@ $(STAMP_RUN)

$(STAMP_BENCH): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[bench,ml]'
	touch $@ $(STAMP_RUN)

DEMO_DIR ?= var/demo
MAIN_JOB := examples/ticket-routing.yml

# The service runs in the terminal's foreground on its own (scripts/foreground.py), so that
# Ctrl-C reaches it alone: it stops cleanly and make carries on instead of being interrupted.
run: $(STAMP_RUN)
	$(BIN)/otai demo setup --dir $(DEMO_DIR)
	@echo
	@echo "The CLI is $(BIN)/otai (or run: source $(BIN)/activate, then otai ...)."
	@echo "While the job runs, from a second terminal in this directory:"
	@echo "  $(BIN)/otai status $(MAIN_JOB)"
	@echo "  $(BIN)/otai tickets --db $(DEMO_DIR)/helpdesk.sqlite list"
	@echo "Console: http://127.0.0.1:8765/ (user demo, password demo-console). Ctrl-C stops it."
	@echo
	OTAI_DEMO_DIR=$(DEMO_DIR) $(BIN)/python scripts/foreground.py $(BIN)/otai run $(MAIN_JOB)
	@echo
	@echo "Stopped. The routed tickets: $(BIN)/otai tickets --db $(DEMO_DIR)/helpdesk.sqlite list"

lint: $(STAMP_TEST)
	$(BIN)/ruff format --check src tests bench examples scripts
	$(BIN)/ruff check src tests bench examples scripts
	$(BIN)/mypy src

test: lint
	$(BIN)/pytest

bench: $(STAMP_BENCH)
	$(BIN)/python -m bench

soak: $(STAMP_TEST)
	$(BIN)/python scripts/soak.py $(if $(ROUNDS),--rounds $(ROUNDS))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var examples/var
