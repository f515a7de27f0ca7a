"""Test-suite plumbing: the database under test must be reachable.

Without a reachable server every database test is skipped with the reason;
with ``TANDEM_REQUIRE_SERVICES=1`` (set by ``.ci/run``) that is a failure.
"""

import os

import pytest

from tests.settings import DATABASES, MYSQL_URL, POSTGRES_URL, TEST_DB


def _unreachable() -> str | None:
    """Why the database under test cannot be used, or None."""
    if TEST_DB == "postgresql":
        import psycopg

        try:
            psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
        except psycopg.Error as exc:
            return f"PostgreSQL at {POSTGRES_URL} is not reachable ({exc}); set TANDEM_POSTGRES_URL"
    if TEST_DB == "mysql":
        try:
            import MySQLdb
        except ImportError:
            return "mysqlclient is not installed (pip install 'django-tandem[mysql]')"
        db = DATABASES["default"]
        try:
            MySQLdb.connect(
                host=db["HOST"],
                port=int(db["PORT"]),
                user=db["USER"],
                passwd=db["PASSWORD"],
                connect_timeout=3,
            ).close()
        except MySQLdb.Error as exc:
            return f"MySQL/MariaDB at {MYSQL_URL} is not reachable ({exc}); set TANDEM_MYSQL_URL"
    return None


def pytest_report_header(config):
    return f"tandem: database under test: {TEST_DB} (TANDEM_TEST_DB)"


def pytest_collection_modifyitems(config, items):
    reason = _unreachable()
    if reason is None:
        return
    if os.environ.get("TANDEM_REQUIRE_SERVICES") == "1":
        pytest.exit(f"TANDEM_REQUIRE_SERVICES=1 but {reason}", returncode=1)
    for item in items:
        item.add_marker(pytest.mark.skip(reason=reason))
