"""Test-suite plumbing: the database under test must be reachable.

Without a reachable server every database test is skipped with the reason;
with ``TANDEM_REQUIRE_SERVICES=1`` (set by ``.ci/run``) that is a failure.
"""

import os

import psycopg
import pytest

from tests.settings import POSTGRES_URL, TEST_DB


def _unreachable() -> str | None:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable ({exc}); set TANDEM_POSTGRES_URL"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _unreachable() if TEST_DB == "postgresql" else None
    if reason is None:
        return
    if os.environ.get("TANDEM_REQUIRE_SERVICES") == "1":
        pytest.exit(f"TANDEM_REQUIRE_SERVICES=1 but {reason}", returncode=1)
    for item in items:
        item.add_marker(pytest.mark.skip(reason=reason))
