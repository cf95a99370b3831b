# The README's two commands: `make demo` and `make test`. Each creates the virtual environment it needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# CI and `make test` run the suite on PostgreSQL (the production database) and on SQLite (the embedded default).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: demo test lint typecheck migrations-check chromium test-postgres test-sqlite bench lock clean

$(VENV)/.installed: pyproject.toml requirements.lock
	@python=$$(.ci/python) && echo "Creating $(VENV) with $$python" && $$python -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint requirements.lock -e '.[dev]'
	@touch $@

# The spark extra (PySpark, for `recluster --engine spark`) for the tests only: its equality tests run in
# `make test`, so CI installs it; `make demo` does without its 450 MB (pip builds pyspark's sdist once and
# caches the wheel).
$(VENV)/.spark: $(VENV)/.installed
	@echo "Installing the spark extra (PySpark) for its tests"
	$(PY) -m pip install --quiet --constraint requirements.lock -e '.[dev,spark]'
	@touch $@

demo: $(VENV)/.installed
	DEBUG=1 $(PY) manage.py demo --url http://$(HOST):$(PORT)
	@echo "Serving the admin at http://$(HOST):$(PORT)/admin/ (Ctrl-C to stop)"
	DEBUG=1 $(PY) manage.py runserver --noreload $(HOST):$(PORT)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(VENV)/.spark
	DEBUG=1 $(VENV)/bin/mypy .

migrations-check: $(VENV)/.installed
	DEBUG=1 $(PY) manage.py makemigrations --check --dry-run

test-postgres: $(VENV)/.spark
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) -m pytest -q -p no:cacheprovider --junitxml=var/junit-postgres.xml
	$(PY) .ci/count_tests.py var/junit-postgres.xml

# The SQLite pass leaves out the tests that use neither database nor server (tests/conftest.py, DATABASE_FREE):
# the PostgreSQL pass has run them, and nothing they check depends on the database.
test-sqlite: $(VENV)/.spark
	DATABASE_URL= $(PY) -m pytest -q -p no:cacheprovider --skip-database-free --junitxml=var/junit-sqlite.xml
	$(PY) .ci/count_tests.py var/junit-sqlite.xml

# The admin browser tests drive Debian's chromium (Playwright's own browser download does not work here):
# installed when missing and apt-get can; otherwise `make test` stops here, unless EXCHANGE_SKIP_BROWSER_TESTS=1.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then \
	  echo "Installing Debian's chromium for the admin browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || { echo "chromium is missing and could not be installed: apt-get install chromium, or set" \
	            "EXCHANGE_SKIP_BROWSER_TESTS=1 to skip the browser tests knowingly" >&2; \
	       [ -n "$$EXCHANGE_SKIP_BROWSER_TESTS" ] && [ "$$EXCHANGE_SKIP_BROWSER_TESTS" != 0 ]; }; \
	fi

test: lint typecheck migrations-check chromium test-postgres test-sqlite

# Not part of `make test`: issue 17's three figures at quick sizes, each beside its floor from the same run, in
# one table (tests/bench/bench_all.py; about 3 minutes): ingest through the reference client against gunicorn
# (DEBUG off, 2 workers, the worker clustering) vs a single-table COPY; lookups right after it at 200/s over one
# connection vs an authenticated GET /api/v1/me/; the full recluster at 7% shared vs read + SciPy connected
# components. It creates and drops its databases (exchange_reliab_bench, exchange_bench_graph) on
# 127.0.0.1 as user postgres. The full sizes: BENCH_ROWS=250000 BENCH_RECLUSTER_SIGHTINGS=5000000.
BENCH_ROWS ?= 50000
BENCH_RECLUSTER_SIGHTINGS ?= 1000000
bench: $(VENV)/.installed
	$(PY) tests/bench/bench_all.py --rows $(BENCH_ROWS) --recluster-sightings $(BENCH_RECLUSTER_SIGHTINGS)

# requirements.lock: the runtime dependencies at the versions CI tests (`make test` installs with it as a
# constraint; the Dockerfile and operators install it). Regenerate after changing pyproject's dependencies.
lock:
	rm -rf var/lockenv && $$(.ci/python) -m venv var/lockenv && var/lockenv/bin/pip install --quiet .
	(echo "# The runtime dependencies at the versions CI tested: pip install -r requirements.lock (make lock)"; \
	 var/lockenv/bin/pip freeze --exclude-editable | grep -v -i '^bad[-_]actor[-_]exchange') > requirements.lock
	rm -rf var/lockenv build

clean:
	rm -rf $(VENV) var
