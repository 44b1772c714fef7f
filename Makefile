# Developer entry points. Everything runs from the project venv (.venv), so the
# targets work offline once `make install` has run.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY_PATHS := src tests alembic

.PHONY: install dev lint typecheck test bench console-screenshots

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

# The console's pages in headless Chromium (tests/console/), each captured into
# docs/console/<page>.png for docs/console.md; fails when a page was not taken.
CONSOLE_PAGES := login accounts account outbox webhooks webhook keys
console-screenshots:
	rm -f $(addprefix docs/console/,$(addsuffix .png,$(CONSOLE_PAGES)))
	MAILSVC_CONSOLE_SCREENSHOTS=docs/console $(BIN)/pytest -q -p no:cacheprovider tests/console
	@for page in $(CONSOLE_PAGES); do \
		test -s docs/console/$$page.png || { echo "docs/console/$$page.png was not taken"; exit 1; }; \
	done
