# Two commands do everything on a fresh machine:
#   make demo   - the example project on uvicorn at http://127.0.0.1:8000/
#                 (SQLite; TANDEM_DEMO_DB=postgresql|mysql for a server)
#   make test   - create the virtualenv, install, run the whole test suite
# PYTHON picks the interpreter (and so the Django version: 3.11 -> 5.2 LTS,
# 3.12+ -> 6.1); VENV where its environment lives.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench conformance chaos docs clean

# mysqlclient (MySQL driver, in the dev extra) builds from source against
# libmariadb: on Debian/Ubuntu its headers and pkg-config come from apt when
# missing (elsewhere install libmariadb or libmysqlclient yourself). The
# demo's browser test drives Debian's chromium (Playwright's own download is
# not used), also from apt when missing.
$(STAMP): pyproject.toml
	@pkg-config --exists libmariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null || \
		! command -v apt-get >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmariadb-dev pkg-config >/dev/null)
	@command -v chromium >/dev/null || ! command -v apt-get >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

# One run tests one database (TANDEM_TEST_DB), so the coverage gate covers
# the code every run exercises: everything but the database backends (and the
# worker threads that only SQLite and MySQL use), which
# the full report still shows.
test: $(STAMP)
	$(BIN)/python -m coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/python -m coverage report
	$(BIN)/python -m coverage report --omit="tandem/db/backends/*/*,tandem/db/threaded.py" --fail-under=80 > /dev/null \
		|| (echo "coverage of tandem outside the backends is below 80%"; exit 1)
	@# The demo's own tests, on the same database.
	cd example && TANDEM_DEMO_DB=$${TANDEM_TEST_DB:-sqlite} $(abspath $(BIN))/python -m pytest $(PYTEST_ARGS)

# mypy type-checks tandem/ ([tool.mypy] in pyproject.toml says how strictly);
# lint-imports holds the layers to their contracts ([tool.importlinter]), and
# tools/architecture.py to the rest of docs/concepts/architecture.md's rules
# (module size, flat modules, complete __all__).
lint: $(STAMP)
	$(BIN)/ruff check tandem tests bench example conformance chaos tools docs/_hooks
	$(BIN)/ruff format --check tandem tests bench example conformance chaos tools docs/_hooks
	$(BIN)/mypy tandem
	$(BIN)/lint-imports
	$(BIN)/python tools/architecture.py check

# The upstream stub (example/upstream.py, UPSTREAM_LATENCY seconds) and the
# SMTP sink the order confirmations go to (example/mailsink.py, keeping them
# in example/mail.jsonl) run beside uvicorn and stop with it. The dashboard's
# cache is Redis on 127.0.0.1:6379 (TANDEM_DEMO_CACHE=locmem: no Redis).
UPSTREAM_LATENCY ?= 0.05
demo: $(STAMP)
	cd example && $(abspath $(BIN))/python manage.py ensure_db
	cd example && $(abspath $(BIN))/python manage.py migrate --noinput
	cd example && $(abspath $(BIN))/python manage.py seed
	@echo "onsale, the tandem demo: http://127.0.0.1:8000/ (dashboard: http://127.0.0.1:8000/dashboard/)"
	@echo "log in as demo, password demo (http://127.0.0.1:8000/login/); its mail: http://127.0.0.1:8000/mail/"
	cd example && { $(abspath $(BIN))/python upstream.py --port 8001 --latency $(UPSTREAM_LATENCY) & upstream=$$!; \
		$(abspath $(BIN))/python mailsink.py --port 8025 --store mail.jsonl & mailsink=$$!; \
		trap "kill $$upstream $$mailsink 2>/dev/null" EXIT INT TERM; \
		$(abspath $(BIN))/python -m uvicorn demo.asgi:application --host 127.0.0.1 --port 8000; }

# Django's own test suite against tandem, compared with stock Django
# (docs/conformance.md). DB="postgresql sqlite mysql" and APPS="basic ..."
# select what runs, PARALLEL=2 runs each mode in 2 processes (runtests.py
# --parallel); exits 1 on any regression.
conformance: $(STAMP)
	$(BIN)/python -m conformance $(if $(DB),--db "$(DB)") $(if $(APPS),--apps "$(APPS)") $(if $(PARALLEL),--parallel $(PARALLEL))

# Faults, load and isolation against the real servers (docs/reliability.md):
# pool exhaustion, concurrent transfers, connections killed under load, on
# PostgreSQL, PostgreSQL behind PgBouncer, MariaDB/MySQL and SQLite, in
# databases of its own (tandem_chaos_<django version>). CHAOS_ARGS="--quick"
# is CI's run (< 2 minutes); "--db postgresql --scenarios '4a 1'" selects.
# Exits 1 when a must-be-0 column is not 0. The runner starts and stops its
# own PgBouncer (Debian's package, from apt when missing; without it the
# pgbouncer rows are skipped, or fail under TANDEM_REQUIRE_SERVICES=1).
chaos: $(STAMP)
	@command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || ! command -v apt-get >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null) || \
		echo "chaos: could not install pgbouncer with apt-get: the pgbouncer rows will say so"
	$(BIN)/python -m chaos $(CHAOS_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/orm.py

# bench/http.py: the demo under wrk against the alternatives, in an
# environment of its own (Python 3.12: django-async-backend needs Django 6.1).
BENCH_VENV ?= .venv-bench
BENCH_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python) python3.12)
$(BENCH_VENV)/.installed: pyproject.toml bench/http_apps/requirements.txt
	@command -v wrk >/dev/null || ! command -v apt-get >/dev/null || \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
	$(BENCH_PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[postgresql,redis]" hiredis \
		-r bench/http_apps/requirements.txt psycopg-pool gunicorn matplotlib
	touch $@

bench-http: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/http.py $(BENCH_ARGS)

# bench/http_storm.py: one server before and after three 1000-connection storms.
bench-http-storm: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/http_storm.py $(BENCH_ARGS)

# The documentation site (mkdocs.yml, docs/) into site/; --strict: a broken
# link or anchor fails the build.
docs: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r docs/requirements.txt
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

clean:
	rm -rf .venv .venv-* .coverage* .pytest_cache
