# Everything runs from a project-local virtual environment that this Makefile creates.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: run test lint bench tools clean

run: $(STAMP)            ## run the platform (embedded shape): make run [ARGS=--simulate]
	$(BIN)/k2 up $(ARGS)

test: $(STAMP) tools lint ## run the whole test suite (after the lint, format and type checks)
	$(BIN)/python -m pytest

lint: $(STAMP)           ## ruff's lint and format checks, and mypy over src/
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(STAMP)          ## run every benchmark script but the burn-in (bench/burnin.py --hours H)
	for b in bench/[!_]*.py; do [ $$b = bench/burnin.py ] || $(BIN)/python $$b || exit 1; done

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# promtool and the Prometheus server come from Debian's `prometheus` package, alertmanager and
# amtool from `prometheus-alertmanager`, the browser the web page's tests drive from `chromium`
# (nothing on PyPI provides them). The alert-rule, scrape, routing and page tests skip, saying why,
# where they cannot be installed.
DEBS := prometheus prometheus-alertmanager chromium
tools:
	@command -v promtool >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's $(DEBS) for the alert-rule, scrape, routing and page tests"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq --no-install-recommends $(DEBS) >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends $(DEBS) >/dev/null 2>&1; } || \
	    echo "note: could not install $(DEBS); their tests will be skipped"; \
	  else echo "note: promtool/amtool/chromium not found and apt-get not usable as root; their tests will be skipped"; fi; }

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
