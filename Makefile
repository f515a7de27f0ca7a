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

.PHONY: demo test lint bench clean

# mysqlclient (MySQL driver, in the dev extra) builds from source against
# libmariadb: on Debian/Ubuntu its headers and pkg-config come from apt when
# missing (elsewhere install libmariadb or libmysqlclient yourself).
$(STAMP): pyproject.toml
	@pkg-config --exists libmariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null || \
		! command -v apt-get >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmariadb-dev pkg-config >/dev/null)
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

lint: $(STAMP)
	$(BIN)/ruff check tandem tests bench example
	$(BIN)/ruff format --check tandem tests bench example

demo: $(STAMP)
	cd example && $(abspath $(BIN))/python manage.py ensure_db
	cd example && $(abspath $(BIN))/python manage.py migrate --noinput
	cd example && $(abspath $(BIN))/python manage.py seed
	@echo "tandem demo: http://127.0.0.1:8000/"
	cd example && $(abspath $(BIN))/python -m uvicorn demo.asgi:application --host 127.0.0.1 --port 8000

bench: $(STAMP)
	$(BIN)/python bench/orm.py

clean:
	rm -rf .venv .venv-* .coverage* .pytest_cache
