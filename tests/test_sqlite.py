"""tandem's SQLite backend: worker threads, many writers, in-memory test DB, cancellation.

Run with ``TANDEM_TEST_DB=sqlite``; on another database the module is skipped.
"""

import asyncio
import copy
import sqlite3
import sys
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections, transaction
from django.db.backends.signals import connection_created
from django.db.models import F

if connections["default"].vendor != "sqlite":
    pytest.skip(
        "SQLite backend tests: the database under test is not SQLite (set TANDEM_TEST_DB=sqlite)",
        allow_module_level=True,
    )

from tandem import aatomic, native
from tandem.db.backends.sqlite3.base import DatabaseWrapper
from tandem.db.backends.sqlite3.driver import SQLiteConnection
from tandem.db.pool import loop_pools
from tests import db  # noqa: F401 - registers tandem_sleep() on every SQLite connection
from tests.app.models import Author, Counter
from tests.watchdog import LoopWatch

pytestmark = pytest.mark.django_db(transaction=True)

# Runs until interrupted (a couple of minutes otherwise): SQLite's own work,
# which interrupt() stops between two steps of its virtual machine.
ENDLESS = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM (SELECT x FROM c LIMIT 1000000000)"
)


def _sql(sql: str, params=(), using: str = "default") -> list:
    """Sync: run ``sql`` on ``using`` and return all rows."""
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _sql_noting_connection(seen: list, sql: str) -> list:
    """Like ``_sql``, first noting the driver connection it runs on."""
    connection.ensure_connection()
    seen.append(connection.connection)
    return _sql(sql)


def _closed(conn: SQLiteConnection) -> bool:
    """True once the driver connection behind ``conn`` is closed."""
    try:
        conn.raw.in_transaction  # noqa: B018 - raises once closed
    except sqlite3.ProgrammingError:
        return True
    return False


async def _soon(awaitable, within: float = 10.0):
    """Await ``awaitable``, failing instead of hanging if a helper task died."""
    return await asyncio.wait_for(awaitable, within)


async def _until(condition, within: float = 1.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return False


async def _pool_is_clean(alias: str = "default") -> bool:
    """True once every connection of the pool is back, idle (give it one loop turn)."""
    await asyncio.sleep(0)
    pool = loop_pools()[alias]
    return pool.idle == pool.size and pool.waiting == 0


# -- probes: which thread ran each statement --------------------------------------------


class Probe:
    """Notes the thread of every statement SQLite runs (trace callback).

    SQLite calls the trace callback from the thread that steps the
    statement, so this sees where the SQL really ran, not where Django's
    cursor wrapper was called.
    """

    def __init__(self) -> None:
        self.statements: list[tuple[str, str]] = []
        self.active = True

    def install(self, sender, connection, **kwargs) -> None:
        raw = getattr(connection.connection, "raw", connection.connection)
        raw.set_trace_callback(self._trace)

    def _trace(self, sql: str) -> None:
        if self.active:
            self.statements.append((threading.current_thread().name, sql))

    def threads(self) -> set[str]:
        return {name for name, _ in self.statements}


def _open_sync_connections() -> list:
    return [
        connections[alias]
        for alias in connections
        if connections[alias].vendor == "sqlite" and connections[alias].connection is not None
    ]


@pytest.fixture
def probe():
    probe = Probe()
    connection_created.connect(probe.install)
    for wrapper in _open_sync_connections():  # connected before the test: install it now
        probe.install(None, wrapper)
    yield probe
    probe.active = False
    connection_created.disconnect(probe.install)
    for wrapper in _open_sync_connections():
        getattr(wrapper.connection, "raw", wrapper.connection).set_trace_callback(None)


# -- (1) a slow query never blocks the loop ------------------------------------------------


async def test_a_two_second_query_leaves_the_loop_free():
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    started = time.monotonic()
    async with LoopWatch() as watch:
        assert await native(_sql)("SELECT tandem_sleep(2)") == [(0,)]
    elapsed = time.monotonic() - started
    ticking.cancel()
    assert elapsed >= 1.9  # the query did run for its two seconds...
    assert ticks > 20  # ...the loop turned all along (held by the query, it would not have)...
    assert watch.longest < 0.05  # ...and no step of it held the loop


# -- (2) many writers ------------------------------------------------------------------------


async def test_fifty_tasks_in_read_then_write_transactions_all_commit():
    counter = await Counter.objects.acreate(name="hits")

    async def writer(n: int) -> None:
        for i in range(4):
            async with aatomic():
                # Read, then write from what was read: with DEFERRED
                # transactions two such blocks deadlock ("database is locked").
                value = (await Counter.objects.aget(pk=counter.pk)).value
                await Author.objects.acreate(name=f"{n}-{i}")
                await Counter.objects.filter(pk=counter.pk).aupdate(value=value + 1)

    await asyncio.gather(*(writer(n) for n in range(50)))
    assert await Author.objects.acount() == 200
    assert (await Counter.objects.aget(pk=counter.pk)).value == 200  # no lost update either
    assert await _pool_is_clean()


async def test_autocommit_writers_wait_for_a_transaction_and_then_all_succeed():
    counter = await Counter.objects.acreate(name="hits")
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder():
        async with aatomic():
            await Counter.objects.filter(pk=counter.pk).aupdate(value=F("value") + 1)
            holding.set()
            await release.wait()

    held = asyncio.create_task(holder())
    await _soon(holding.wait())
    writers = [
        asyncio.create_task(Counter.objects.filter(pk=counter.pk).aupdate(value=F("value") + 1))
        for _ in range(20)
    ]
    await asyncio.sleep(0.2)
    assert not any(w.done() for w in writers)  # waiting for the write lock, off the loop
    release.set()
    await _soon(asyncio.gather(held, *writers))
    assert (await Counter.objects.aget(pk=counter.pk)).value == 21


# -- (3) Django's in-memory shared-cache test database --------------------------------------


@pytest.mark.django_db(transaction=True, databases=["default", "memory"])
async def test_in_memory_test_database_is_shared_by_tasks():
    memory = Author.objects.using("memory")
    written = asyncio.Event()

    async def writer():
        async with aatomic(using="memory"):
            await memory.acreate(name="in memory")
        written.set()

    async def reader():
        await written.wait()
        return [a.name async for a in memory.all()]

    _, names = await asyncio.gather(writer(), reader())
    assert names == ["in memory"]

    # Reads at once, on connections of their own. (They do not overlap in
    # time: SQLite serialises the statements of a shared cache.)
    reads = [memory.acount() for _ in range(10)]
    assert await asyncio.gather(*reads) == [1] * 10
    assert loop_pools()["memory"].size > 1
    assert await native(_sql)("PRAGMA journal_mode", using="memory") == [("memory",)]  # no WAL in memory


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="waiting out shared-cache locks needs sqlite3 error codes"
)
@pytest.mark.django_db(transaction=True, databases=["default", "memory"])
async def test_in_memory_test_database_takes_concurrent_writers():
    memory = Author.objects.using("memory")

    async def writer(n: int) -> None:
        for i in range(3):
            async with aatomic(using="memory"):
                await memory.acreate(name=f"{n}-{i}")
            await memory.acount()  # reading outside a transaction, while others write

    await asyncio.gather(*(writer(n) for n in range(20)))
    assert await memory.acount() == 60


@pytest.mark.django_db(transaction=True, databases=["default", "memory"])
async def test_closing_the_pool_does_not_drop_the_in_memory_database():
    seen = []

    def write_noting_connection():
        connections["memory"].ensure_connection()
        seen.append(connections["memory"].connection)
        Author.objects.using("memory").create(name="kept")

    await native(write_noting_connection)()
    loop_pools()["memory"].close()  # as when the loop shuts down

    assert await _until(lambda: _closed(seen[0]))

    def read_elsewhere() -> list:
        # The test thread's connection, which Django never closes, keeps the database.
        other = sqlite3.connect(connections.settings["memory"]["NAME"], uri=True)
        try:
            return other.execute(f"SELECT name FROM {Author._meta.db_table}").fetchall()
        finally:
            other.close()

    assert await asyncio.to_thread(read_elsewhere) == [("kept",)]


# -- (4) cancellation ---------------------------------------------------------------------------


async def test_cancelled_query_is_interrupted_and_its_connection_discarded():
    seen = []
    task = asyncio.create_task(native(_sql_noting_connection)(seen, ENDLESS))
    await asyncio.sleep(0.1)
    assert not task.done()
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled_at < 1.0
    assert await Author.objects.acount() == 0  # the next query works
    assert await _pool_is_clean()
    interrupted = seen[0]
    assert interrupted.interrupted

    # SQLite keeps an interrupt pending while any statement of the connection
    # is unfinished: the pool closes interrupted connections rather than reuse them.
    assert await _until(lambda: _closed(interrupted))


async def test_cancelled_twice_while_the_interrupt_is_in_flight():
    task = asyncio.create_task(native(_sql)(ENDLESS))
    await asyncio.sleep(0.1)
    cancelled_at = time.monotonic()
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()  # e.g. a TaskGroup and a timeout both giving up on it
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled_at < 1.0
    assert await Author.objects.acount() == 0  # the pool hands out a working connection
    assert await _pool_is_clean()


def _insert_without_commit(seen: list) -> None:
    connection.set_autocommit(False)
    connection.ensure_connection()
    seen.append(connection.connection)
    Author.objects.create(name="uncommitted")


async def test_connection_left_in_a_transaction_is_discarded():
    seen = []
    await native(_insert_without_commit)(seen)
    assert await _pool_is_clean()
    assert loop_pools()["default"].size == 0  # not pooled: closed, which rolls it back
    assert await _until(lambda: _closed(seen[0]))
    assert await Author.objects.acount() == 0


@pytest.mark.parametrize("in_transaction", [True, False], ids=["aatomic", "autocommit"])
async def test_cancelled_while_waiting_for_another_writer(in_transaction):
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder():
        async with aatomic():
            await Author.objects.acreate(name="holder")
            holding.set()
            await release.wait()

    async def waiter():
        if in_transaction:
            async with aatomic():  # waits at BEGIN IMMEDIATE
                await Author.objects.acreate(name="waiter")
        else:
            await Author.objects.acreate(name="waiter")  # waits at the INSERT

    held = asyncio.create_task(holder())
    await _soon(holding.wait())
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0.2)
    assert not waiting.done()
    cancelled_at = time.monotonic()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # SQLite's busy timeout (20 s) sleeps in C and ignores interrupt(); tandem waits in slices.
    assert time.monotonic() - cancelled_at < 1.0
    release.set()
    await _soon(held)
    assert [a.name async for a in Author.objects.all()] == ["holder"]
    assert await _pool_is_clean()


async def test_timeout_inside_aatomic_interrupts_and_rolls_back():
    async def buy():
        async with aatomic():
            await Author.objects.acreate(name="never committed")
            await native(_sql)(ENDLESS)

    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(buy(), 0.3)
    assert time.monotonic() - started < 1.3
    assert await Author.objects.acount() == 0
    assert await _pool_is_clean()


# -- (5)/(6) where the calls run --------------------------------------------------------------


def test_sync_orm_runs_in_the_calling_thread(probe):
    connection.close()  # the next query connects, with the probe installed
    threads_before = {t.name for t in threading.enumerate()}
    Author.objects.create(name="sync")
    with transaction.atomic():
        Author.objects.create(name="in atomic")
    assert Author.objects.count() == 2
    assert isinstance(connection.connection, SQLiteConnection)
    assert probe.threads() == {threading.current_thread().name}
    started = {t.name for t in threading.enumerate()} - threads_before
    assert not any(name.startswith("tandem-db") for name in started)  # no worker thread at all


async def test_bridge_calls_that_may_block_run_on_the_connections_worker_thread(probe):
    await Author.objects.acreate(name="a")
    async with aatomic():
        await Author.objects.acreate(name="b")
        assert await Author.objects.acount() == 2
    where = {}
    for thread, statement in probe.statements:
        if statement.startswith("PRAGMA busy_timeout"):  # set around each wait for a lock
            continue
        where.setdefault(statement.split()[0], set()).add(
            "worker" if thread.startswith("tandem-db") else thread
        )
    loop = threading.current_thread().name
    # Commits (an autocommit write is one) on the worker; the rest on the
    # loop, under a time budget (see tests/test_sqlite_loop.py).
    assert where == {"INSERT": {"worker", loop}, "BEGIN": {loop}, "SELECT": {loop}, "COMMIT": {"worker"}}


# -- (7) defaults and OPTIONS -------------------------------------------------------------------


def test_wal_busy_timeout_and_immediate_transactions_are_the_defaults():
    assert _sql("PRAGMA journal_mode") == [("wal",)]
    assert _sql("PRAGMA busy_timeout") == [(20000,)]
    assert connection.transaction_mode == "IMMEDIATE"
    assert "pool" not in connection.get_connection_params()


def _standalone(tmp_path, **options) -> DatabaseWrapper:
    settings = copy.deepcopy(connections.settings["default"])
    settings.update(NAME=str(tmp_path / "own.sqlite3"), OPTIONS=options)
    return DatabaseWrapper(settings, alias="standalone")


def test_user_options_override_the_defaults(tmp_path):
    options = {
        "timeout": 3,
        "transaction_mode": "DEFERRED",
        "init_command": "PRAGMA journal_mode=TRUNCATE",
        "pool": {"max_size": 3},
    }
    wrapper = _standalone(tmp_path, **copy.deepcopy(options))
    try:
        with wrapper.cursor() as cursor:
            assert cursor.execute("PRAGMA journal_mode").fetchone() == ("truncate",)
            assert cursor.execute("PRAGMA busy_timeout").fetchone() == (3000,)
        assert wrapper.transaction_mode == "DEFERRED"
        assert wrapper.settings_dict["OPTIONS"] == options  # applied to a copy
    finally:
        wrapper.close()
    wrapper = _standalone(tmp_path, transaction_mode=None)  # None: SQLite's own DEFERRED
    try:
        wrapper.ensure_connection()
        assert wrapper.transaction_mode is None
    finally:
        wrapper.close()


def test_a_private_in_memory_database_is_refused_to_tasks(tmp_path):
    wrapper = _standalone(tmp_path)
    wrapper.settings_dict["NAME"] = ":memory:"
    wrapper.task_owned = True  # as tandem.db.scope marks a task's wrapper
    with pytest.raises(ImproperlyConfigured, match="separate, empty database"):
        wrapper.get_new_connection(wrapper.get_connection_params())


def test_cloning_the_test_database_includes_what_is_still_in_the_wal(tmp_path):
    wrapper = _standalone(tmp_path)
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("CREATE TABLE t (x)")
            cursor.execute("INSERT INTO t VALUES (42)")
        assert (tmp_path / "own.sqlite3-wal").stat().st_size > 0  # not checkpointed yet
        wrapper.creation._clone_test_db("1", verbosity=0)
    finally:
        wrapper.close()
    clone = sqlite3.connect(tmp_path / "own_1.sqlite3")
    try:
        assert clone.execute("SELECT x FROM t").fetchall() == [(42,)]
    finally:
        clone.close()


# -- cursors: prefetched rows, pinned cursors ---------------------------------------------------


def _read_every_way(count: int) -> list:
    numbers = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %s) SELECT x FROM c"
    with connection.cursor() as cursor:
        cursor.execute(numbers if count else "SELECT 1 WHERE 0", [count] if count else None)
        return [
            cursor.fetchone(),
            cursor.fetchmany(150),
            cursor.fetchmany(),
            cursor.fetchall(),
            cursor.fetchone(),
        ]


COUNTS = [0, 1, 99, 100, 101, 152, 250]


def _expected(count: int) -> list:
    rows = [(x,) for x in range(1, count + 1)]
    return [rows[0] if rows else None, rows[1:151], rows[151:152], rows[152:], None]


@pytest.mark.parametrize("count", COUNTS)
async def test_rows_come_back_as_the_driver_returns_them(count):
    assert await native(_read_every_way)(count) == _expected(count)


@pytest.mark.parametrize("count", COUNTS)
def test_rows_come_back_as_the_driver_returns_them_sync(count):
    assert _read_every_way(count) == _expected(count)


async def test_aiterator_streams_past_the_prefetched_rows_and_unpins():
    await Author.objects.abulk_create([Author(name=f"{n:03}") for n in range(250)])
    names = [a.name async for a in Author.objects.order_by("name").aiterator(chunk_size=150)]
    assert names == [f"{n:03}" for n in range(250)]
    async for _ in Author.objects.aiterator(chunk_size=10):
        break
    await asyncio.sleep(0.05)  # the abandoned iterator closes its cursor as a unit of its own
    assert await Author.objects.acount() == 250
    assert await _pool_is_clean()
