"""SQLite statements on the loop thread: what runs there, and what must not.

tandem's SQLite backend runs short statements on the loop thread under a
time budget (``OPTIONS["loop_budget_ms"]``): a read that runs past it is
interrupted and run again on the connection's worker thread; a write in a
transaction lets the loop run and goes on; commits, autocommit writes, lock
waits and Python functions of the user's run on the worker. These tests
check each of those promises, the loop's (no gap above 50 ms) and the
data's (no statement applied twice, no transaction lost).

Run with ``TANDEM_TEST_DB=sqlite``; on another database the module is skipped.
"""

import asyncio
import copy
import gc
import sqlite3
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections, transaction
from django.db.backends.signals import connection_created

if connections["default"].vendor != "sqlite":
    pytest.skip(
        "SQLite backend tests: the database under test is not SQLite (set TANDEM_TEST_DB=sqlite)",
        allow_module_level=True,
    )

from tandem import aatomic, native
from tandem.bridge import await_
from tandem.db.backends.sqlite3 import driver
from tandem.db.backends.sqlite3.base import DatabaseWrapper
from tandem.db.backends.sqlite3.driver import READ, SAVEPOINT, WRITE, statement_kind
from tandem.db.pool import loop_pools
from tests import db  # registers tandem_sleep() on every SQLite connection
from tests.app.models import Author, Counter
from tests.watchdog import longest_stall

pytestmark = pytest.mark.django_db(transaction=True)

AUTHORS = Author._meta.db_table
# SQLite's own work, ~1 s of it: far past any budget, and stoppable.
TEN_MILLION = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000) "
COUNT_TO_TEN_MILLION = TEN_MILLION + "SELECT count(*) FROM c"
INSERT_AFTER_COUNTING = f"INSERT INTO {AUTHORS} (name) {TEN_MILLION}SELECT 'counted ' || count(*) FROM c"
ENDLESS = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM (SELECT x FROM c LIMIT 1000000000)"
)
THOUSAND_ROWS = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) SELECT x FROM c"
)
MAX_GAP = 0.05


def _sql(sql: str, params=(), using: str = "default") -> list:
    """Sync: run ``sql`` on ``using`` and return all rows."""
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _driver_connection(using: str = "default"):
    """Sync, in the bridge: the tandem driver connection this unit uses."""
    connections[using].ensure_connection()
    return connections[using].connection


async def _pool_is_clean(alias: str = "default") -> bool:
    await asyncio.sleep(0)
    pool = loop_pools()[alias]
    return pool.idle == pool.size and pool.waiting == 0


async def _soon(awaitable, within: float = 10.0):
    return await asyncio.wait_for(awaitable, within)


class Trace:
    """Every statement SQLite starts, with the thread that steps it (trace callback)."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, str]] = []

    def install(self, sender, connection, **kwargs) -> None:
        raw = getattr(connection.connection, "raw", connection.connection)
        raw.set_trace_callback(self._trace)

    def _trace(self, sql: str) -> None:
        if not sql.startswith("PRAGMA busy_timeout"):
            self.statements.append((_where(threading.current_thread().name), sql))

    def where(self, prefix: str) -> list[str]:
        """Where each statement starting with ``prefix`` ran, in order: "loop" or "worker"."""
        return [thread for thread, sql in self.statements if sql.startswith(prefix)]


def _where(thread_name: str) -> str:
    return "worker" if thread_name.startswith("tandem-db") else "loop"


@pytest.fixture(autouse=True)
def forget_long_statements():
    """Each test starts with no statement remembered as long (they are per database file)."""
    for memory in driver.memories.values():
        memory.long.clear()
        memory.calls_python.clear()


@pytest.fixture
def trace():
    trace = Trace()
    connection_created.connect(trace.install)
    yield trace
    connection_created.disconnect(trace.install)


# -- which statement is which ----------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ('SELECT "x" FROM t', READ),
        ("  \n select 1", READ),
        ("(SELECT 1) UNION (SELECT 2)", READ),
        ("-- a comment\nSELECT 1", READ),
        ("/* INSERT */ VALUES (1)", READ),
        ("EXPLAIN QUERY PLAN DELETE FROM t", READ),
        ("WITH c(x) AS (SELECT 1) SELECT x FROM c", READ),
        ("WITH c(x) AS (SELECT 1) INSERT INTO t SELECT x FROM c", WRITE),
        ("WITH c(x) AS (SELECT 'update') SELECT x FROM c", WRITE),  # cautious: a word is enough
        ("INSERT INTO t VALUES (1) RETURNING id", WRITE),
        ("update t set x = 1", WRITE),
        ("DELETE FROM t", WRITE),
        ("REPLACE INTO t VALUES (1)", WRITE),
        ("BEGIN IMMEDIATE", driver.BEGIN),
        ('SAVEPOINT "s1"', SAVEPOINT),
        ('RELEASE SAVEPOINT "s1"', SAVEPOINT),
        ('ROLLBACK TO SAVEPOINT "s1"', SAVEPOINT),
        ("ROLLBACK", driver.OTHER),
        ("COMMIT", driver.OTHER),
        ("PRAGMA foreign_keys", driver.OTHER),
        ("CREATE TABLE t (x)", driver.OTHER),
        ("   " * 40 + ";", driver.OTHER),  # no word at all: and no catastrophic backtracking
        (b"SELECT 1", driver.OTHER),
    ],
)
def test_statement_kinds(sql, kind):
    assert statement_kind(sql) == kind


# -- short statements: no hop --------------------------------------------------------------


def _reads_counting_hops() -> tuple[bool, int, list]:
    conn = _driver_connection()
    before = conn.hops
    results = [
        Author.objects.filter(name="a").count(),
        [a.name for a in Author.objects.order_by("pk")[:5]],
        Author.objects.filter(pk=-1).exists(),
        Author.objects.get(name="a").name,
    ]
    return conn.runs_on_loop, conn.hops - before, results


async def test_short_reads_run_on_the_loop_without_a_hop(trace):
    await Author.objects.acreate(name="a")
    runs_on_loop, hops, results = await native(_reads_counting_hops)()
    assert runs_on_loop
    assert hops == 0
    assert results == [1, ["a"], False, "a"]
    assert set(trace.where("SELECT")) == {"loop"}


def _transaction_counting_hops() -> int:
    conn = _driver_connection()
    before = conn.hops
    with transaction.atomic():
        Author.objects.create(name="one")
        Author.objects.create(name="two")
        with transaction.atomic():  # a savepoint
            Counter.objects.create(name="c")
    return conn.hops - before


async def test_a_transaction_hops_once_for_its_commit(trace):
    assert await native(_transaction_counting_hops)() == 1
    assert trace.where("BEGIN") == ["loop"]
    assert trace.where("INSERT") == ["loop"] * 3
    assert set(trace.where("SAVEPOINT") + trace.where("RELEASE")) == {"loop"}
    assert trace.where("COMMIT") == ["worker"]
    assert await Author.objects.acount() == 2


async def test_autocommit_writes_run_on_the_worker(trace):
    author = await Author.objects.acreate(name="a")
    author.name = "b"
    await author.asave()
    await Author.objects.filter(pk=author.pk).aupdate(name="c")
    assert trace.where("INSERT") == ["worker"]
    assert trace.where("UPDATE") == ["worker", "worker"]


def test_sync_code_is_stock_django():
    # Outside the bridge: sqlite3's own connection class, no loop, no hop.
    conn = _driver_connection()
    assert type(conn.raw) is sqlite3.Connection
    assert not conn.runs_on_loop
    Author.objects.create(name="sync")
    assert conn.hops == 0
    assert _sql("PRAGMA busy_timeout") == [(20000,)]


# -- long statements: never stall the loop ---------------------------------------------------


async def test_a_long_read_moves_to_the_worker_and_leaves_no_gap_in_the_loop(trace):
    result = []

    async def count():
        result.append(await native(_sql)(COUNT_TO_TEN_MILLION))

    assert await longest_stall(count()) < MAX_GAP
    assert result == [[(10_000_000,)]]
    # Interrupted on the loop at its budget, run again, whole, on the worker.
    assert trace.where(TEN_MILLION) == ["loop", "worker"]

    # Remembered as long: the next run goes to the worker at once.
    trace.statements.clear()
    assert await native(_sql)(COUNT_TO_TEN_MILLION) == [(10_000_000,)]
    assert trace.where(TEN_MILLION) == ["worker"]


async def test_rows_past_the_first_chunk_are_fetched_on_the_worker():
    numbers = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) SELECT x FROM c"

    def read() -> tuple[int, list]:
        conn = _driver_connection()
        before = conn.hops
        rows = _sql(numbers)
        return conn.hops - before, rows

    hops, rows = await native(read)()
    assert rows == [(x,) for x in range(1, 5001)]
    assert hops == 1  # the first 100 rows came with execute(), on the loop; the rest in one hop


def _read_then_long_read_then_long_write() -> tuple[list, list]:
    with transaction.atomic():
        Author.objects.create(name="first")
        counted = _sql(COUNT_TO_TEN_MILLION)  # interrupted on the loop, run again on the worker
        _sql(INSERT_AFTER_COUNTING)  # a write in a transaction: pauses, never interrupted
        inside = sorted(Author.objects.values_list("name", flat=True))
    return counted, inside


async def test_long_statements_inside_aatomic_run_once_and_keep_the_transaction(trace):
    result = []

    async def work():
        result.append(await native(_read_then_long_read_then_long_write)())

    assert await longest_stall(work()) < MAX_GAP
    counted, inside = result[0]
    assert counted == [(10_000_000,)]
    assert inside == ["counted 10000000", "first"]  # the interrupted read rolled nothing back
    assert sorted([a.name async for a in Author.objects.all()]) == ["counted 10000000", "first"]
    # The read ran twice, loop then worker; the write once, on the loop, with
    # the loop running in between (no gap above): no duplicate row.
    assert trace.where(TEN_MILLION) == ["loop", "worker"]
    assert trace.where(f"INSERT INTO {AUTHORS} (name) WITH") == ["loop"]
    assert await _pool_is_clean()


def _long_write_in_a_transaction() -> None:
    with transaction.atomic():
        _sql(INSERT_AFTER_COUNTING)


async def test_a_write_that_ran_long_goes_to_the_worker_next_time(trace):
    await native(_long_write_in_a_transaction)()
    await native(_long_write_in_a_transaction)()
    # Paused on the loop the first time; its work was the loop's. Not again.
    assert trace.where(f"INSERT INTO {AUTHORS} (name) WITH") == ["loop", "worker"]
    assert await Author.objects.acount() == 2


async def test_a_long_write_in_aatomic_is_cancellable():
    started = asyncio.Event()

    async def buy():
        async with aatomic():
            await Author.objects.acreate(name="never committed")
            started.set()
            await native(_sql)(f"INSERT INTO {AUTHORS} (name) " + ENDLESS)

    task = asyncio.create_task(buy())
    await _soon(started.wait())
    await asyncio.sleep(0.1)
    assert not task.done()
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled_at < 1.0
    assert await Author.objects.acount() == 0
    assert await _pool_is_clean()


async def test_a_long_read_is_cancellable():
    task = asyncio.create_task(native(_sql)(ENDLESS))
    await asyncio.sleep(0.1)  # past the loop's budget: on the worker by now
    assert not task.done()
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled_at < 1.0
    assert await Author.objects.acount() == 0
    assert await _pool_is_clean()


# -- cancelled mid-statement: the connection is closed, not reused ------------------------------


def _rows_left_unread(left: list) -> None:
    # As the ORM does: a cursor closed on an Exception, not on a cancellation.
    cursor = connection.cursor()
    cursor.execute(THOUSAND_ROWS)  # on the loop, with its first 100 rows: the statement stays mid-way
    cursor.fetchone()
    left.append((connection.connection, cursor))
    await_(asyncio.sleep(60))  # cancelled here


def _write_stopped_in_its_pause(left: list) -> None:
    with transaction.atomic():
        Author.objects.create(name="never committed")
        cursor = connection.cursor()
        left.append((connection.connection, cursor))
        cursor.execute(INSERT_AFTER_COUNTING)  # pauses on the loop each budget: cancelled in a pause


def _long_write_on_the_worker() -> object:
    # Autocommit: the worker's, whole (about a second), holding the connection's mutex.
    _sql(INSERT_AFTER_COUNTING)
    return connection.connection


@pytest.fixture
def without_test_functions():
    """No ``tests.db`` functions registered at each checkout of a pooled connection.

    Registering a function fails on a connection with a statement mid-way
    ("Error creating function"): without the fix that error would hide the
    stall this module measures.
    """
    connection_created.disconnect(db._sqlite_functions)
    yield
    connection_created.connect(db._sqlite_functions)


@pytest.mark.usefixtures("without_test_functions")
@pytest.mark.parametrize("leave", [_rows_left_unread, _write_stopped_in_its_pause], ids=["rows", "write"])
async def test_a_cursor_a_cancelled_task_left_mid_statement_never_stalls_the_loop(leave):
    # sqlite3 resets a statement when its cursor is closed or freed, under the
    # connection's mutex. Given back to the pool, the connection would go to
    # the next task, whose long statement on the worker holds that mutex while
    # the loop frees the cancelled task's cursor (the garbage collector does,
    # in a real request): the loop would wait for the whole statement.
    left: list = []
    task = asyncio.create_task(native(leave)(left))
    await _soon(_until(lambda: left))
    await asyncio.sleep(0.05)  # rows read / the write past a few budgets
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ((its_connection, cursor),) = left
    left[:] = [cursor]
    del cursor
    gc.collect()  # the traceback's cycles: only ``left`` keeps the cursor now

    next_user = asyncio.create_task(native(_long_write_on_the_worker)())
    await asyncio.sleep(0.2)
    assert not next_user.done()

    async def free_the_cursor():
        left.clear()
        return await _soon(next_user)

    assert await longest_stall(free_the_cursor()) < MAX_GAP
    # Closed, not reused; nothing of the cancelled task's written.
    assert next_user.result() is not its_connection
    assert [a.name async for a in Author.objects.all()] == ["counted 10000000"]
    assert await _pool_is_clean()


def _read(how: str) -> object:
    cursor = connection.cursor()
    cursor.execute(THOUSAND_ROWS)
    if how == "closed":
        cursor.fetchone()
        cursor.close()
    else:
        cursor.fetchall()  # to its end, and never closed
    return connection.connection


@pytest.mark.parametrize("how", ["closed", "read to its end"])
async def test_a_cursor_closed_or_read_to_its_end_leaves_its_connection_to_the_pool(how):
    first = await native(_read)(how)
    await asyncio.sleep(0)  # the connection goes back to the pool between units
    assert await native(_driver_connection)() is first


async def test_a_connection_opened_for_a_cancelled_task_is_closed_on_its_worker(tmp_path):
    closed_in: list[str] = []

    class Noted(sqlite3.Connection):
        def close(self) -> None:
            closed_in.append(_where(threading.current_thread().name))
            super().close()

    # Connecting takes about a second, on the worker: Django runs init_command there.
    wrapper = _standalone(tmp_path, factory=Noted, init_command=COUNT_TO_TEN_MILLION)
    task = asyncio.create_task(native(wrapper.ensure_connection)())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Not left to be freed, and so closed, on the loop.
    await _soon(_until(lambda: closed_in))
    assert closed_in == ["worker"]


async def _until(condition, step: float = 0.005) -> None:
    while not condition():
        await asyncio.sleep(step)


# -- locks: waited for on the worker, never on the loop --------------------------------------------


async def test_waiting_for_another_connections_lock_does_not_stall_the_loop(trace):
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder():
        async with aatomic():
            await Author.objects.acreate(name="holder")
            holding.set()
            await release.wait()

    async def waiters():
        async def in_transaction():
            async with aatomic():  # BEGIN IMMEDIATE waits for the holder's lock
                await Author.objects.acreate(name="in transaction")

        waiting = [asyncio.create_task(in_transaction())]
        waiting.append(asyncio.create_task(Author.objects.acreate(name="autocommit")))
        await asyncio.sleep(0.3)
        assert not any(task.done() for task in waiting)
        release.set()
        await _soon(asyncio.gather(*waiting))

    held = asyncio.create_task(holder())
    await _soon(holding.wait())
    assert await longest_stall(waiters()) < MAX_GAP
    await held
    names = sorted([a.name async for a in Author.objects.all()])
    assert names == ["autocommit", "holder", "in transaction"]
    # The waiting BEGIN failed at once on the loop and waited on the worker
    # (in slices: each a new try).
    begins = trace.where("BEGIN")
    assert begins[:2] == ["loop", "loop"] and begins[2:] and set(begins[2:]) == {"worker"}
    assert await _pool_is_clean()


def _deferred_writer(n: int) -> None:
    # A DEFERRED transaction takes the write lock at its first write, on the
    # loop: when another connection holds it, that write fails at once there
    # and waits on the worker.
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute(f"INSERT INTO {AUTHORS} (name) VALUES (%s)", [f"writer {n}"])
        cursor.execute(f"UPDATE {AUTHORS} SET name = name || '.' WHERE name = %s", [f"writer {n}"])
        cursor.execute("COMMIT")


async def test_fifty_deferred_writers_wait_for_each_other_and_all_commit():
    # None fails with "database is locked". (Fifty tasks doing Django's work
    # keep the loop busy: how long its turns take is the machine's business
    # here; a waiting writer's loop is measured above.)
    await asyncio.gather(*(native(_deferred_writer)(n) for n in range(50)))
    names = sorted([a.name async for a in Author.objects.all()])
    assert names == sorted(f"writer {n}." for n in range(50))
    assert await _pool_is_clean()


async def test_fifty_aatomic_writers_all_commit():
    counter = await Counter.objects.acreate(name="hits")

    async def writer(n: int) -> None:
        for i in range(4):
            async with aatomic():
                value = (await Counter.objects.aget(pk=counter.pk)).value
                await Author.objects.acreate(name=f"{n}-{i}")
                await Counter.objects.filter(pk=counter.pk).aupdate(value=value + 1)

    await asyncio.gather(*(writer(n) for n in range(50)))
    assert await Author.objects.acount() == 200
    assert (await Counter.objects.aget(pk=counter.pk)).value == 200
    assert await _pool_is_clean()


# -- Python functions of the user's ------------------------------------------------------------


class Calls:
    """A function, and an aggregate, that note the thread they run in."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        calls = self

        class Total:
            def __init__(self) -> None:
                self.total = 0

            def step(self, value) -> None:
                calls.threads.append(_where(threading.current_thread().name))
                self.total += value

            def finalize(self) -> int:
                return self.total

        self.aggregate = Total

    def function(self, value):
        self.threads.append(_where(threading.current_thread().name))
        return value * 2

    def install(self, sender, connection, **kwargs) -> None:
        raw = getattr(connection.connection, "raw", connection.connection)
        raw.create_function("noted", 1, self.function)
        raw.create_aggregate("noted_total", 1, self.aggregate)


@pytest.fixture
def calls():
    calls = Calls()
    connection_created.connect(calls.install)
    yield calls
    connection_created.disconnect(calls.install)


THREE = "SELECT 1 AS v UNION ALL SELECT 2 UNION ALL SELECT 3"


async def test_a_read_calling_a_python_function_runs_it_on_the_worker_once(calls, trace):
    assert await native(_sql)(f"SELECT noted(v) FROM ({THREE}) ORDER BY 1") == [(2,), (4,), (6,)]
    assert calls.threads == ["worker"] * 3  # never on the loop, never twice
    calls.threads.clear()
    assert await native(_sql)(f"SELECT noted_total(v) FROM ({THREE})") == [(6,)]
    assert calls.threads == ["worker"] * 3
    # Remembered: the next run of the same text goes to the worker at once.
    trace.statements.clear()
    await native(_sql)(f"SELECT noted(v) FROM ({THREE}) ORDER BY 1")
    assert trace.where("SELECT noted(") == ["worker"]


def _insert_calling_python() -> list:
    with transaction.atomic():
        _sql(f"INSERT INTO {AUTHORS} (name) SELECT 'n' || noted(v) FROM ({THREE})")
        _sql(f"INSERT INTO {AUTHORS} (name) SELECT 't' || noted_total(v) FROM ({THREE})")
    return sorted(Author.objects.values_list("name", flat=True))


async def test_a_write_in_a_transaction_hands_python_functions_to_the_worker(calls, trace):
    assert await native(_insert_calling_python)() == ["n2", "n4", "n6", "t6"]
    assert calls.threads == ["worker"] * 6
    assert trace.where(f"INSERT INTO {AUTHORS}") == ["loop", "loop"]  # the statements stayed


def _djangos_own_function() -> tuple[list, int]:
    # Django's functions (here REGEXP) are registered while connecting: trusted, they
    # run on the loop with their statement.
    conn = _driver_connection()
    before = conn.hops
    names = list(Author.objects.filter(name__regex=r"^a+$").values_list("name", flat=True))
    return names, conn.hops - before


async def test_djangos_own_functions_run_on_the_loop():
    await Author.objects.acreate(name="aaa")
    assert await native(_djangos_own_function)() == (["aaa"], 0)


async def test_a_python_sleep_in_a_query_never_stalls_the_loop():
    async def sleeps():
        await asyncio.gather(*(native(_sql)("SELECT tandem_sleep(0.2)") for _ in range(5)))

    assert await longest_stall(sleeps()) < MAX_GAP


# -- where the loop is not used -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True, databases=["default", "memory"])
async def test_a_shared_cache_database_never_runs_statements_on_the_loop():
    def on_memory() -> tuple[bool, int]:
        conn = _driver_connection("memory")
        before = conn.hops
        Author.objects.using("memory").count()
        return conn.runs_on_loop, conn.hops - before

    assert await native(on_memory)() == (False, 1)


def _standalone(tmp_path, **options) -> DatabaseWrapper:
    settings = copy.deepcopy(connections.settings["default"])
    settings.update(NAME=str(tmp_path / "own.sqlite3"), OPTIONS=options)
    return DatabaseWrapper(settings, alias="standalone")


@pytest.mark.parametrize("value", [-1, "1", True, None, float("nan"), float("inf")])
def test_an_invalid_loop_budget_names_the_key(tmp_path, value):
    wrapper = _standalone(tmp_path, loop_budget_ms=value)
    with pytest.raises(ImproperlyConfigured, match=r"\['OPTIONS'\]\['loop_budget_ms'\]"):
        wrapper.get_connection_params()


def test_the_loop_budget_is_not_passed_to_sqlite3(tmp_path):
    wrapper = _standalone(tmp_path, loop_budget_ms=2.5)
    params = wrapper.get_connection_params()
    assert "loop_budget_ms" not in params
    assert wrapper.loop_budget == 0.0025


async def test_a_zero_budget_runs_every_statement_on_the_worker(tmp_path):
    wrapper = _standalone(tmp_path, loop_budget_ms=0)

    def read() -> tuple[bool, int, list]:
        wrapper.ensure_connection()
        conn = wrapper.connection
        before = conn.hops
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT 1")
            rows = cursor.fetchall()
        return conn.runs_on_loop, conn.hops - before, rows

    try:
        assert await native(read)() == (False, 1, [(1,)])
    finally:
        await native(wrapper.close)()


def _write_stopped_as_if_it_were_a_read() -> None:
    with transaction.atomic():
        Author.objects.create(name="lost")
        conn = connection.connection
        cursor = conn.raw.cursor()
        # What the classifier must never allow: a write stopped at the budget.
        conn.on_loop(driver.INTERRUPT, INSERT_AFTER_COUNTING, cursor.execute, INSERT_AFTER_COUNTING)


async def test_a_write_stopped_on_the_loop_is_an_error_not_a_silent_rollback():
    # SQLite answers an interrupted write by rolling back the whole transaction:
    # should the kinds ever let one be stopped, the caller hears of it.
    with pytest.raises(sqlite3.OperationalError, match="rolled back the whole transaction"):
        await native(_write_stopped_as_if_it_were_a_read)()
    assert await Author.objects.acount() == 0
    assert await _pool_is_clean()
