# Developer entry points. Everything runs from the project venv (.venv), so the
# targets work offline once `make install` has run.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY_PATHS := src tests alembic

.PHONY: install dev lint typecheck test bench

install:
	$(PYTHON) -m venv $(VENV) && $(BIN)/pip install -c constraints.txt -e ".[embedded,dev]"

dev:
	$(BIN)/mailsvc dev

lint:
	$(BIN)/ruff check $(PY_PATHS)
	$(BIN)/ruff format --check $(PY_PATHS)
	VENV=$(VENV) .ci/lint-containers

typecheck:
	$(BIN)/mypy

test:
	scripts/test

# Every benchmark script in bench/; stops at the first one that fails.
bench:
	@set -e; for f in bench/*.py; do \
		[ -e "$$f" ] || continue; \
		echo "$(BIN)/python $$f"; \
		$(BIN)/python "$$f"; \
	done
