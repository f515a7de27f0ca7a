"""Session state never travels between tasks through the pool (issue 11, scenario 6).

A task that changes its connection's session (``SET search_path``, a role, a
time zone, ``set_config()``, a temporary table, an advisory lock, a prepared
statement, a MariaDB user variable) keeps that connection until it ends, and
the connection is then closed, not pooled: the next task starts from the
session Django's ``connect()`` sets up.
"""

import asyncio

import pytest
from django.db import connections

from tandem import native
from tandem.db.pool import loop_pools
from tandem.db.session import may_change_session
from tests.db import backend_pid
from tests.settings import TEST_DB

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "small"])

# vendor -> name -> (statements that change the session, a query whose answer they change)
LEAKS = {
    "postgresql": {
        "search_path": (["SET search_path TO tandem_elsewhere, public"], "SHOW search_path"),
        "role": (["SET ROLE tandem_probe"], "SELECT current_user"),
        "time zone": (["SET TIME ZONE 'Pacific/Auckland'"], "SHOW TIME ZONE"),
        "set_config": (
            ["SELECT set_config('tandem.tenant', '42', false)"],
            "SELECT current_setting('tandem.tenant', true)",
        ),
        "temporary table": (
            ["CREATE TEMP TABLE tandem_leak (i int)"],
            "SELECT to_regclass('pg_temp.tandem_leak') IS NULL",
        ),
        "advisory lock": (
            ["SELECT pg_advisory_lock(424242)"],
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242",
        ),
        "prepared statement": (
            ["PREPARE tandem_leak AS SELECT 1"],
            "SELECT count(*) FROM pg_prepared_statements WHERE name = 'tandem_leak'",
        ),
    },
    "mysql": {
        "user variable": (["SET @tandem_tenant = 42"], "SELECT @tandem_tenant"),
        "session variable": (["SET SESSION wait_timeout = 12345"], "SELECT @@SESSION.wait_timeout"),
        "time zone": (["SET time_zone = '+05:00'"], "SELECT @@SESSION.time_zone"),
        # MariaDB 10 lists no temporary tables anywhere: this one hides a real, empty table.
        "temporary table": (
            ["CREATE TEMPORARY TABLE tandem_shadow (i int)", "INSERT INTO tandem_shadow VALUES (1)"],
            "SELECT COUNT(*) FROM tandem_shadow",
        ),
        "named lock": (["SELECT GET_LOCK('tandem_leak', 0)"], "SELECT IS_FREE_LOCK('tandem_leak')"),
    },
    "sqlite": {
        "temporary table": (
            ["CREATE TEMP TABLE tandem_leak (i int)"],
            "SELECT count(*) FROM sqlite_temp_master WHERE name = 'tandem_leak'",
        ),
    },
}

# What some cases need around them: (setup, teardown), each run by a task of its own.
SETUP = {
    ("postgresql", "role"): (
        [
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tandem_probe') "
            "THEN CREATE ROLE tandem_probe NOLOGIN; END IF; END $$"
        ],
        [],
    ),
    ("mysql", "temporary table"): (
        ["CREATE TABLE IF NOT EXISTS tandem_shadow (i int)"],
        ["DROP TABLE IF EXISTS tandem_shadow"],
    ),
}


def probe(sql: str):
    with connections["small"].cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def change(statements: list[str]):
    with connections["small"].cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
    return backend_pid("small")


@pytest.mark.parametrize("name", sorted(LEAKS[TEST_DB]))
async def test_a_changed_session_stays_with_its_task_and_never_reaches_another(name):
    statements, probe_sql = LEAKS[TEST_DB][name]
    setup, teardown = SETUP.get((TEST_DB, name), ([], []))
    await asyncio.create_task(native(change)(setup))
    try:
        await check_no_leak(name, statements, probe_sql)
    finally:
        await asyncio.create_task(native(change)(teardown))


async def check_no_leak(name, statements, probe_sql):
    fresh = await native(probe)(probe_sql)  # the baseline, on a clean connection

    async def changer():
        pid = await native(change)(statements)
        changed = await native(probe)(probe_sql)
        await asyncio.sleep(0.01)  # between units: the connection would go back to the pool
        # Still the same connection, session and all: the task keeps it.
        assert await native(backend_pid)("small") == pid
        assert await native(probe)(probe_sql) == changed
        return pid, changed

    pid, changed = await asyncio.create_task(changer())
    assert changed != fresh, "the statement did change the session"
    # Every later task, whichever pooled connection it gets, sees the baseline.
    for _ in range(4):
        seen = await asyncio.create_task(native(probe)(probe_sql))
        assert seen == fresh, f"{name} leaked from a finished task"
        assert await asyncio.create_task(native(backend_pid)("small")) != pid


async def test_data_statements_keep_connections_pooled():
    async def query():
        return await native(backend_pid)("small")

    first = await asyncio.create_task(query())
    assert await asyncio.create_task(query()) == first  # same pooled connection, not discarded
    assert loop_pools()["small"].size == 1


@pytest.mark.parametrize(
    "sql, changes",
    [
        ('SELECT "t"."id" FROM "t" WHERE "t"."id" = %s', False),
        ('INSERT INTO "t" ("a") VALUES (%s) RETURNING "t"."id"', False),
        ('SAVEPOINT "s1"', False),
        ('ROLLBACK TO SAVEPOINT "s1"', False),
        ("SET CONSTRAINTS ALL IMMEDIATE", False),
        ("SET LOCAL search_path TO x", False),
        ("SELECT pg_advisory_xact_lock(1)", False),
        ('CREATE TABLE "t" ("id" integer)', False),
        ("set search_path to x", True),
        ("SET ROLE reporting", True),
        ("  SELECT set_config('a.b', '1', false)", True),
        ("SELECT pg_try_advisory_lock(1)", True),
        ("CREATE TEMPORARY TABLE t (i int)", True),
        ("CREATE LOCAL TEMP TABLE t (i int)", True),
        ("PREPARE p AS SELECT 1", True),
        ("LISTEN channel", True),
        ("SET @tenant = 1", True),
        ("SELECT @tenant := 1", True),
        ("SELECT GET_LOCK('x', 0)", True),
        ("USE other", True),
        ("PRAGMA foreign_keys = OFF", True),
    ],
)
def test_which_statements_may_change_the_session(sql, changes):
    assert may_change_session(sql) is changes


@pytest.mark.skipif(TEST_DB != "postgresql", reason="PostgreSQL's debug cursor adds copy()")
def test_the_backends_own_cursor_wrapper_is_kept():
    """The watch subclasses the backend's wrapper: PostgreSQL's logs copy() (Django's test_copy_cursors)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    copy_sql = "COPY django_session TO STDOUT (FORMAT CSV, HEADER)"
    with CaptureQueriesContext(connection) as queries, connection.cursor() as cursor:
        with cursor.copy(copy_sql) as copy:
            for _ in copy:
                pass
    assert [q["sql"] for q in queries.captured_queries] == [copy_sql]


@pytest.mark.parametrize("name", sorted(LEAKS[TEST_DB]))
async def test_a_request_boundary_ends_a_changed_session_even_in_the_same_task(name):
    # Django 6.1's ASGI handler runs the view in the server's task: a server
    # (or a test client) that serves two requests from one task must still
    # give the second one a clean session. Django closes old connections as
    # each request starts and ends; a changed session is discarded there.
    from django.db import close_old_connections

    statements, probe_sql = LEAKS[TEST_DB][name]
    setup, teardown = SETUP.get((TEST_DB, name), ([], []))
    await asyncio.create_task(native(change)(setup))

    async def two_requests_in_one_task():
        fresh = await native(probe)(probe_sql)
        close_old_connections()  # request_finished
        await native(change)(statements)
        changed = await native(probe)(probe_sql)
        close_old_connections()  # request_finished
        close_old_connections()  # request_started
        return fresh, changed, await native(probe)(probe_sql)

    try:
        fresh, changed, next_request = await asyncio.create_task(two_requests_in_one_task())
        assert changed != fresh
        assert next_request == fresh, f"{name} reached the next request of the same task"
    finally:
        await asyncio.create_task(native(change)(teardown))
