"""tandem's MySQL/MariaDB backend: worker threads, cancellation, Django's OPTIONS.

Run with ``TANDEM_TEST_DB=mysql``; on another database the module is skipped.
"""

import asyncio
import threading
import time

import pytest
from django.db import OperationalError, connection, connections

if connections["default"].vendor != "mysql":
    pytest.skip(
        "MySQL/MariaDB backend tests: the database under test is not MySQL (set TANDEM_TEST_DB=mysql)",
        allow_module_level=True,
    )

import MySQLdb

from tandem import aatomic, native
from tandem.db.backends.mysql.driver import MySQLConnection
from tandem.db.pool import loop_pools
from tandem.db.threaded import current_thread_is_worker
from tests.app.models import Author
from tests.db import alive, backend_pid, running_query, terminate

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "checked", "tuned"])


async def _until(condition, within: float = 1.0) -> bool:
    """Poll ``condition()`` (blocking helpers run off the loop) until true or ``within`` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(condition):
            return True
        await asyncio.sleep(0.02)
    return False


def _sleep_reporting_pid(pids: list, seconds: float) -> None:
    pids.append(backend_pid())
    backend_pid(sleep=seconds)


async def _start_sleeper(seconds: float = 5) -> tuple[asyncio.Task, int]:
    """A task sleeping on the server; returns it and its connection id once the query runs."""
    pids: list[int] = []
    task = asyncio.create_task(native(_sleep_reporting_pid)(pids, seconds))
    assert await _until(lambda: bool(pids) and running_query(pids[0]))
    return task, pids[0]


# -- cancellation ----------------------------------------------------------------------


async def test_cancelled_query_is_killed_and_its_connection_reused():
    task, pid = await _start_sleeper()
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - cancelled_at < 1.0  # the kill ended it; SLEEP(5) did not run out
    assert not await asyncio.to_thread(running_query, pid)
    await asyncio.sleep(0)  # the task's connection goes back to the pool
    pool = loop_pools()["default"]
    assert pool.idle == pool.size == 1  # KILL QUERY left it usable, idle, clean
    assert await native(backend_pid)() == pid  # the next query reuses it


async def test_timeout_inside_aatomic_kills_the_query_and_rolls_back():
    pids: list[int] = []

    async def buy():
        async with aatomic():
            await Author.objects.acreate(name="never committed")
            await native(_sleep_reporting_pid)(pids, 5)

    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(buy(), 0.3)
    assert time.monotonic() - started < 1.3
    assert not await asyncio.to_thread(running_query, pids[0])
    assert await Author.objects.acount() == 0


async def test_cancelled_again_and_again_while_the_kill_is_in_flight():
    # e.g. a TaskGroup and a timeout both giving up on it: every wait of the
    # clean-up (for the kill, for the worker) is interrupted in turn.
    task, pid = await _start_sleeper()
    for _ in range(50):
        if task.done():
            break
        task.cancel()
        await asyncio.sleep(0.002)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _until(lambda: not running_query(pid))
    assert await Author.objects.acount() == 0  # the pool hands out a working connection
    pool = loop_pools()["default"]
    assert pool.size <= 2


async def test_closing_a_connection_its_worker_still_uses_waits_for_the_call():
    params = await native(connection.get_connection_params)()
    conn = await native(MySQLConnection.open)(lambda: MySQLdb.connect(**params))
    running = asyncio.create_task(native(conn.cursor().execute)("SELECT SLEEP(0.3)"))
    await asyncio.sleep(0.1)
    assert conn.worker.busy
    conn.close_now()  # what a pool closing with its loop does: must not pull the rug
    assert await running == 1  # the call finished normally...
    assert await _until(lambda: not conn.raw.open)  # ...and the close followed it


async def test_a_failed_kill_is_logged_and_the_query_runs_to_its_end(caplog):
    pids: list[int] = []

    def sleep_with_a_broken_killer():
        pids.append(backend_pid())
        connection.connection.killer.params["port"] = 1  # nothing listens there
        backend_pid(sleep=0.5)

    task = asyncio.create_task(native(sleep_with_a_broken_killer)())
    assert await _until(lambda: bool(pids) and running_query(pids[0]))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await asyncio.to_thread(running_query, pids[0])  # it ended before the task did
    assert any("KILL QUERY" in record.getMessage() for record in caplog.records)


# -- the pool's reuse rules ---------------------------------------------------------------


def _insert_without_commit() -> int:
    connection.set_autocommit(False)
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO app_author (name) VALUES ('uncommitted')")
    return backend_pid()


async def test_connection_left_in_a_transaction_is_discarded():
    pid = await native(_insert_without_commit)()
    await asyncio.sleep(0)  # the unit is over: the connection goes back, in a transaction
    assert loop_pools()["default"].size == 0  # so the pool closed it...
    assert await _until(lambda: not alive([pid]))
    assert await Author.objects.acount() == 0  # ...and the server rolled it back


async def test_connection_killed_while_pooled_is_replaced_after_one_error():
    pid = await native(backend_pid)()
    await asyncio.to_thread(terminate, pid)
    with pytest.raises(OperationalError):  # no health checks on "default": the dead link fails once
        await native(backend_pid)()
    await asyncio.sleep(0)  # as in stock Django, the wrapper keeps it until the task lets go
    assert loop_pools()["default"].size == 0  # then the pool sees it broken and closes it
    assert await native(backend_pid)() != pid


async def test_health_checks_replace_a_connection_killed_while_idle():
    pid = await native(backend_pid)("checked")
    await asyncio.to_thread(terminate, pid)
    assert await native(backend_pid)("checked") != pid  # pinged, found dead, replaced: no error


# -- worker threads ------------------------------------------------------------------------


def _execute_thread(using: str = "default") -> tuple[str, bool]:
    """The thread the driver's execute() ran in, and whether it was a tandem worker."""
    seen = []
    with connections[using].cursor() as cursor:
        raw = cursor.cursor.cursor._raw  # Django's wrapper -> mysql CursorWrapper -> MySQLCursor

        def execute(*args, **kwargs):
            seen.append((threading.current_thread().name, current_thread_is_worker()))
            return type(raw).execute(raw, *args, **kwargs)

        raw.execute = execute
        cursor.execute("SELECT 1")
    return seen[0]


async def test_queries_in_the_bridge_run_on_a_worker_thread():
    name, on_worker = await native(_execute_thread)()
    assert on_worker and name != threading.current_thread().name
    assert isinstance(connection.connection, MySQLConnection)


def test_sync_queries_run_in_the_calling_thread():
    name, on_worker = _execute_thread()
    assert not on_worker and name == threading.current_thread().name
    assert isinstance(connection.connection, MySQLConnection)
    assert connection.connection.worker.busy is False


async def test_parallel_sleeps_overlap_on_distinct_connections():
    started = time.monotonic()
    pids = await asyncio.gather(*(native(backend_pid)("default", 0.2) for _ in range(10)))
    assert time.monotonic() - started < 1.0  # one after another: 2 s
    assert len(set(pids)) == 10


def _driver_level_calls() -> tuple:
    """Multi-statement results, an unbuffered cursor, a server command: all on the worker."""
    connection.ensure_connection()
    raw_conn = connection.connection
    with raw_conn.cursor() as cursor:
        cursor.execute("SELECT 1; SELECT 2")
        first = cursor.fetchall()
        assert cursor.nextset()
        second = cursor.fetchall()
    with raw_conn.cursor() as cursor:
        cursor.execute("SELECT 3; SELECT 4")  # closed with a result still on the wire
    streamed = raw_conn.cursor(MySQLdb.cursors.SSCursor)
    streamed.execute("SELECT seq FROM seq_1_to_5" if connection.mysql_is_mariadb else "SELECT 1")
    rows = [streamed.fetchone(), *streamed.fetchmany(2), *streamed.fetchall()]
    streamed.close()
    return first, second, rows, raw_conn.stat()


async def test_driver_level_calls_in_the_bridge():
    first, second, rows, status = await native(_driver_level_calls)()
    assert (first, second) == (((1,),), ((2,),))
    assert [row[0] for row in rows] == ([1, 2, 3, 4, 5] if len(rows) == 5 else [1])
    assert "Uptime" in status
    assert await native(backend_pid)()  # the connection is in order afterwards


def _where_driver_methods_run() -> tuple[bool, bool, bool]:
    """A driver method tandem has never heard of, and one it knows reads local state."""
    connection.ensure_connection()
    raw_conn = connection.connection
    raw_conn.raw.tandem_probe = current_thread_is_worker  # as a new mysqlclient might add one
    try:
        unknown = raw_conn.tandem_probe()
    finally:
        raw_conn.raw.tandem_probe = None  # mysqlclient refuses to delete it
    return unknown, current_thread_is_worker(), raw_conn.thread_id() == backend_pid()


async def test_driver_methods_tandem_does_not_know_run_on_the_worker():
    # Fails closed: only methods known to read local state run on the loop thread.
    unknown_on_worker, caller_on_worker, local_answers = await native(_where_driver_methods_run)()
    assert unknown_on_worker and not caller_on_worker
    assert local_answers  # thread_id(), read locally, is the server's id of the connection


def _worker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("tandem-db")}


def test_pools_and_worker_threads_end_with_the_loop():
    before = _worker_threads()

    async def main():
        pids = await asyncio.gather(*(native(backend_pid)("default", 0.05) for _ in range(5)))
        assert loop_pools()["default"].size == 5
        return set(pids)

    pids = asyncio.run(main())
    assert len(pids) == 5
    assert alive(pids) == set()  # every server connection closed
    deadline = time.monotonic() + 2
    while _worker_threads() - before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _worker_threads() - before  # and every worker thread ended


# -- Django's MySQL features ---------------------------------------------------------------


@pytest.fixture
def tuned():
    """The "tuned" alias: the test database with Django's MySQL OPTIONS set."""
    return "tuned"


def _session(alias: str) -> tuple:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SHOW SESSION VARIABLES WHERE Variable_name IN ('tx_isolation', 'transaction_isolation')"
        )
        isolation = {value for _name, value in cursor.fetchall()}
        cursor.execute("SELECT CONNECTION_ID(), @tandem_marker, @@SESSION.sql_mode")
        pid, marker, sql_mode = cursor.fetchone()
    return pid, isolation, marker, set(sql_mode.split(",")), connections[alias].sql_mode


async def test_options_init_command_isolation_level_and_sql_mode(tuned):
    first = await native(_session)(tuned)
    await asyncio.sleep(0)  # back to the pool: the next unit borrows the same connection
    second = await native(_session)(tuned)
    assert first[0] == second[0]
    for _pid, isolation, marker, sql_mode, django_sql_mode in (first, second):
        assert isolation == {"SERIALIZABLE"}  # still set on the reused connection
        assert marker == 42
        assert sql_mode == django_sql_mode == {"STRICT_ALL_TABLES", "NO_ZERO_DATE"}


def test_options_in_sync_code(tuned):
    _pid, isolation, marker, sql_mode, _ = _session(tuned)
    assert (isolation, marker) == ({"SERIALIZABLE"}, 42)
    assert "STRICT_ALL_TABLES" in sql_mode


def test_djangos_mysql_checks_still_run(tuned):
    assert connections["default"].validation.check() == []
    options = connections.settings[tuned]["OPTIONS"]
    saved = options["init_command"]
    options["init_command"] = "SET sql_mode = ''"
    wrapper = connections.create_connection(tuned)  # a fresh one: Django caches sql_mode
    try:
        ids = [issue.id for issue in wrapper.validation.check()]
    finally:
        options["init_command"] = saved
        wrapper.close()
    assert ids == ["mysql.W002"]  # Django's "strict mode is not set"


def test_tasks_reuse_the_server_facts_sync_code_learned():
    # Stock Django's thread wrapper keeps them for good, so model checks in a
    # SimpleTestCase (which may not connect) never probe; a task must not either.
    from tandem.db.backends.mysql import base

    base._server_data.clear()  # forget what earlier tests learned
    wrapper = connections.create_connection("default")
    try:
        learned = wrapper.mysql_server_data  # sync code probes, as Django does
    finally:
        wrapper.close()

    async def in_a_new_loop():
        facts = await native(lambda: connections["default"].mysql_server_data)()
        pool = loop_pools().get("default")
        return facts, 0 if pool is None else pool.size

    facts, opened = asyncio.run(in_a_new_loop())
    assert (facts, opened) == (learned, 0)


async def test_server_facts_are_probed_once_per_server():
    first = await native(lambda: connection.mysql_server_data)()

    async def other_task():
        return await native(lambda: connections["default"].mysql_server_data)()

    assert await asyncio.create_task(other_task()) is first  # no second probe for a new task
    assert connection.mysql_is_mariadb == ("mariadb" in first["version"].lower())


async def test_a_closed_connection_answers_with_the_drivers_error_in_the_bridge():
    def close_then_check():
        with connection.cursor():
            pass
        connection._close()  # the server side went away, as Django's own test simulates
        try:
            return connection.is_usable()
        finally:
            connection.close()

    assert await native(close_then_check)() is False  # not "cannot schedule new futures"


# -- autocommit switches ride with the next call -------------------------------------------


def _transaction_counting_calls(fail: bool) -> tuple[int, int]:
    from django.db import transaction

    connection.ensure_connection()
    conn = connection.connection
    before = conn.calls
    try:
        with transaction.atomic():
            for name in ("a", "b", "c"):
                Author.objects.create(name=name)
            if fail:
                raise ValueError("roll back")
    except ValueError:
        pass
    return conn.calls - before, backend_pid()


async def test_a_transaction_sends_autocommit_switches_with_its_statements():
    calls, pid = await native(_transaction_counting_calls)(False)
    # Three INSERTs and the COMMIT: switching autocommit off went with the
    # first INSERT, switching it on again goes with the next call (backend_pid).
    assert calls == 4
    calls, same_pid = await native(_transaction_counting_calls)(True)
    assert calls == 4 and same_pid == pid  # the pooled connection was reused
    names = await native(lambda: sorted(Author.objects.values_list("name", flat=True)))()
    assert names == ["a", "b", "c"]
    # Autocommit is on again for the next user: a write is visible from elsewhere at once.
    await Author.objects.acreate(name="d")
    assert await asyncio.to_thread(_count_elsewhere) == 4


def _count_elsewhere() -> int:
    conn = MySQLdb.connect(**connections["default"].get_connection_params())
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT COUNT(*) FROM {Author._meta.db_table}")
        return cursor.fetchone()[0]
    finally:
        conn.close()


async def test_switches_that_cancel_out_send_nothing():
    def off_then_on() -> tuple:
        connection.ensure_connection()
        conn = connection.connection
        before = conn.calls
        conn.autocommit(False)
        off = (conn.pending_autocommit, conn.get_autocommit())
        conn.autocommit(True)
        return off, (conn.pending_autocommit, conn.get_autocommit()), conn.calls - before

    off, on, calls = await native(off_then_on)()
    assert off == (False, False)  # Django sees autocommit off; nothing went to the server yet
    assert on == (None, True) and calls == 0
