# Two entry points for a fresh machine: `make run` and `make test`.
# Both build an isolated virtual environment from this project's own files.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= configs/local.toml

.PHONY: run test env fio postgres peers clean

run: $(STAMP)
	$(BIN)/tiering demo --config $(CONFIG)

test: $(STAMP) fio postgres
	$(BIN)/python -m pytest $(PYTEST_ARGS)

env: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

# fio comes from Debian; install it when missing and we are root, else say so.
fio:
	@command -v fio >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null; \
	  else echo "note: fio is not installed and we are not root; fio tests will be skipped" >&2; fi; }

# PostgreSQL's server binaries (Debian postgresql) for the PostgreSQL catalog's tests, which run their own
# server on a temporary cluster (tests/pg_fixtures.py); same rule as fio.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "note: PostgreSQL is not installed and we are not root; PostgreSQL catalog tests will be skipped" >&2; fi; }

# fd (Debian fd-find, binary fdfind) is the parallel peer of bench.scan_vs_peers; same rule as fio.
peers:
	@command -v fdfind >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fd-find >/dev/null; \
	  else echo "note: fdfind is not installed and we are not root: apt-get install fd-find" >&2; fi; }

clean:
	rm -rf $(VENV) var
