# Two entry points for a fresh machine: `make run` and `make test`.
# Both build an isolated virtual environment from this project's own files.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= configs/local.toml

.PHONY: run test env fio postgres peers dlio clean

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

# MLPerf Storage's DLIO for `python -m bench.vs_dlio` only: opt-in, in its own venv, never part of env or test.
# Its nvidia-dali dependency downloads from outside the registries, so it is installed without deps, then its real ones.
DLIO_VENV := .venv-dlio
dlio:
	@command -v mpirun >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenmpi-dev openmpi-bin >/dev/null; }
	test -x $(DLIO_VENV)/bin/python || $(PYTHON) -m venv $(DLIO_VENV)
	$(DLIO_VENV)/bin/pip install --quiet --upgrade pip
	$(DLIO_VENV)/bin/pip install --quiet --no-deps dlio-benchmark==2.0.0
	$(DLIO_VENV)/bin/pip install --quiet mpi4py numpy omegaconf hydra-core pandas psutil h5py Pillow PyYAML \
	  pydftracer==1.0.2 'torch==2.13.0+cpu' tensorflow-cpu

clean:
	rm -rf $(VENV) var
