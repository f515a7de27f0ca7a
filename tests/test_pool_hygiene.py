"""A transaction opened with raw SQL never travels to the next task through the pool.

Django only knows about the transactions it opens itself (``atomic``,
``set_autocommit``). A unit of work that runs ``BEGIN`` or ``START
TRANSACTION`` through ``connection.cursor()`` in autocommit mode and fails
before its ``COMMIT`` gives its connection back mid-transaction, with Django
believing it idle. Each backend asks its driver for the real state before
reuse (psycopg's ``transaction_status``, sqlite3's ``in_transaction``, the
server status flags of MariaDB's last reply), so such a connection is closed
(the server rolls it back) instead of serving the next task, whose autocommit
writes would otherwise sit in that transaction and be lost.
"""

import asyncio

import pytest
from django.db import connections

from tandem import native
from tandem.db.pool import loop_pools
from tests.app.models import Author
from tests.db import backend_pid
from tests.settings import TEST_DB

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "small", "checked"])

# Raw statements that open a transaction, by the database under test.
BEGINS = {
    "postgresql": ["BEGIN", "START TRANSACTION"],
    "sqlite": ["BEGIN", "BEGIN IMMEDIATE"],
    "mysql": ["START TRANSACTION", "BEGIN", "begin work"],
}


class UserCodeError(Exception):
    """User code failing between BEGIN and COMMIT."""


def insert(cursor, name: str) -> None:
    table = connections["small"].ops.quote_name(Author._meta.db_table)
    column = connections["small"].ops.quote_name("name")
    cursor.execute(f"INSERT INTO {table} ({column}) VALUES (%s)", [name])


def leave_open(begin: str, *, watch_statements: bool = False) -> int:
    """A unit that opens a transaction with raw SQL, writes, and fails before COMMIT."""
    pid = backend_pid("small")
    if watch_statements:
        # The MySQL backend's fallback where the client library cannot report
        # the server status (Oracle's libmysqlclient): tandem's own reader off.
        connections["small"].connection.server_status = None
    with connections["small"].cursor() as cursor:
        cursor.execute(begin)
        insert(cursor, "left-open")
        raise UserCodeError("failed before COMMIT")
    return pid  # pragma: no cover


def commit_raw(begin: str) -> int:
    """A unit that opens and commits a transaction with raw SQL: a clean connection."""
    with connections["small"].cursor() as cursor:
        cursor.execute(begin)
        insert(cursor, "committed-raw")
        cursor.execute("COMMIT")
    return backend_pid("small")


def autocommit_write() -> int:
    """The next task's autocommit write, through the ORM."""
    Author.objects.using("small").create(name="next-task")
    return backend_pid("small")


def names_seen_elsewhere() -> set[str]:
    """Committed names, read through another alias: another pool, another connection."""
    return set(Author.objects.using("checked").values_list("name", flat=True))


async def run_task(fn, *args, **kwargs):
    return await asyncio.create_task(native(fn)(*args, **kwargs))


async def check_left_open_transaction_is_not_reused(begin: str, *, watch_statements: bool = False) -> None:
    with pytest.raises(UserCodeError):
        await run_task(leave_open, begin, watch_statements=watch_statements)
    await asyncio.sleep(0)  # the connection is back with the pool (or closed)
    kept = loop_pools()["small"].idle

    await run_task(autocommit_write)
    seen = await run_task(names_seen_elsewhere)
    assert "next-task" in seen, "the next task's autocommit write was not committed"
    assert "left-open" not in seen, "the transaction left open was committed by another task"
    assert kept == 0, "a connection given back mid-transaction was kept for reuse"


@pytest.mark.parametrize("begin", BEGINS[TEST_DB])
async def test_a_transaction_left_open_with_raw_sql_never_reaches_the_next_task(begin):
    await check_left_open_transaction_is_not_reused(begin)


@pytest.mark.parametrize("begin", BEGINS[TEST_DB])
async def test_a_raw_transaction_committed_keeps_its_connection_pooled(begin):
    # Asking the driver, not guessing from the SQL: a raw transaction that
    # ended properly costs no reconnection.
    pid = await run_task(commit_raw, begin)
    assert await run_task(backend_pid, "small") == pid
    assert await run_task(names_seen_elsewhere) == {"committed-raw"}


@pytest.mark.skipif(TEST_DB != "mysql", reason="the MySQL backend's fallback")
@pytest.mark.parametrize("begin", ["START TRANSACTION", "  begin", "XA START 'tandem-hygiene'"])
async def test_without_the_server_status_statements_that_open_a_transaction_are_watched(begin):
    await check_left_open_transaction_is_not_reused(begin, watch_statements=True)


@pytest.mark.skipif(TEST_DB != "mysql", reason="MariaDB Connector/C's server status")
def test_the_server_status_follows_transactions_opened_any_way():
    """mysqlclient built on MariaDB Connector/C: the flags of the server's last reply are read."""
    from tandem.db.backends.mysql.driver import ServerStatus

    if not ServerStatus._load():
        pytest.skip("mysqlclient is not built on MariaDB Connector/C (no mariadb_get_info)")
    connection = connections["small"]
    connection.ensure_connection()
    conn = connection.connection
    assert conn.server_status is not None
    seen = []
    with connection.cursor() as cursor:
        for sql in ["SELECT 1", "START TRANSACTION", "SELECT 1", "ROLLBACK", "XA START 'x'", "XA END 'x'"]:
            cursor.execute(sql)
            seen.append(conn.in_transaction)
        cursor.execute("XA ROLLBACK 'x'")
        seen.append(conn.in_transaction)
    assert seen == [False, True, True, False, True, True, False]
