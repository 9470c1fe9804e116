# Two commands for a fresh machine with Python 3.11+ and make:
#   make run    start the hub locally (API + workers on SQLite) at http://127.0.0.1:8000
#   make test   run the whole test suite
#   make package STAGE=dev   the Lambda deployment (SAM template + zip with bytecode) in build/package-dev
# Each (re)creates .venv when requirements change; make test also installs the pinned Node tools
# (Prism, for the vendor mocks in tests/contract) when package-lock.json changes.

# The first interpreter that really runs and is 3.11+. 3.12/3.13 come first because Chalice
# packages for the interpreter it runs on, and Lambda's python3.11 runtime is deprecated.
PYTHON ?= $(shell for p in python3.12 python3.13 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NPM_STAMP := node_modules/.installed

.PHONY: run test bench soak package venv clean browser openapi

STAGE ?= dev
OUT ?= build/package-$(STAGE)

$(STAMP): requirements.txt requirements-embedded.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is required (python3.12 preferred)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

# Without npm the suite still runs: Prism contract tests skip, or fail under CI=true or HUB_REQUIRE_PRISM=1.
$(NPM_STAMP): package.json package-lock.json
	@if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then \
		echo "npm ci --no-audit --no-fund"; npm ci --no-audit --no-fund && touch $(NPM_STAMP); \
	else \
		echo "make: node/npm not found: Prism contract tests will skip (and fail in CI)"; \
	fi

# The browser tests (tests/browser) drive Debian's Chromium through Playwright, which cannot download
# its own browser here. As root with apt-get (CI machines) a missing chromium is installed; elsewhere
# the browser tests skip with the reason, or fail under CI=true / HUB_REQUIRE_BROWSER=1.
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || [ -n "$$HUB_CHROMIUM" ]; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "apt-get install chromium (for the browser tests)"; \
		apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	else \
		echo "make: chromium not found and not root: the browser tests will skip (and fail in CI)"; \
	fi

run: $(STAMP)
	$(BIN)/python -m chalicelib.cli run

test: $(STAMP) $(NPM_STAMP) browser
	$(BIN)/python -m pytest

# The API's OpenAPI document, generated from the routes and the registry (chalicelib/api/openapi/).
openapi: $(STAMP)
	$(BIN)/python -m chalicelib.cli openapi > docs/openapi.json.tmp && mv docs/openapi.json.tmp docs/openapi.json

bench: $(STAMP)
	$(BIN)/python -m bench

# The full soak (100,000 webhooks, kills, destination storms and a 10-minute outage; about an
# hour): not part of make test, which runs its short variant (tests/functional/test_soak.py).
soak: $(STAMP)
	$(BIN)/python -m soak $(SOAK_ARGS)

# chalice package + a .pyc for every module, compiled by the interpreter of the Lambda runtime (docs/deploy.md).
package: $(STAMP)
	$(BIN)/python infra/package.py --stage $(STAGE) $(OUT)

clean:
	rm -rf $(VENV) .pytest_cache build node_modules
