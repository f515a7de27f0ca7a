"""mysqlclient connections whose blocking calls run on their own worker thread.

mysqlclient (``MySQLdb``) wraps libmariadb/libmysqlclient, which only knows
blocking sockets. Inside the bridge each connection's network calls run on
its worker thread (``tandem.db.threaded``); calls that only read memory
(fetching rows already stored on the client, escaping, ``thread_id()``) stay
on the calling thread, since a thread hop costs more than the call itself.

A task cancelled while its query runs has the query killed on the server
(``KILL QUERY``, from a short second connection), so neither the server nor
the worker thread keeps working for nobody.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import MySQLdb
from MySQLdb.cursors import CursorStoreResultMixIn

from tandem.bridge import await_, in_bridge
from tandem.db.threaded import ThreadedConnection, ThreadedCursor, Worker

__all__ = ["LinkWatch", "MySQLConnection", "MySQLCursor", "QueryKiller", "kill_params"]

logger = logging.getLogger("tandem.db.backends.mysql")

# Connection methods of mysqlclient that talk to the server. Everything else
# (escape, literal, thread_id, get_autocommit, insert_id, ...) reads local state.
BLOCKING_METHODS = frozenset(
    {
        "begin",
        "change_user",
        "discard_result",
        "dump_debug_info",
        "kill",
        "next_result",
        "query",
        "read_query_result",
        "select_db",
        "send_query",
        "set_character_set",
        "set_server_option",
        "set_sql_mode",
        "show_warnings",
        "shutdown",
        "stat",
        "store_result",
        "use_result",
    }
)

# Errors after which the link to the server is gone (mysqlclient's own list):
# client-side CR_* codes (gone away, lost connection...), a packet too large,
# a connection killed (MariaDB) or timed out for inactivity (MySQL).
LINK_ERRORS = frozenset({*range(2000, 3000), 1153, 1927, 4031})
# Seconds the killer may take to reach the server.
KILL_CONNECT_TIMEOUT = 5


class MySQLCursor(ThreadedCursor):
    """A mysqlclient cursor: statements on the worker, stored rows read in place.

    mysqlclient's default cursor stores the whole result on the client in
    ``execute()``; fetching from it is a list lookup. Unbuffered cursors
    (``SSCursor``) read rows from the network, so theirs go to the worker.
    """

    def __init__(self, raw: Any, worker: Any) -> None:
        super().__init__(raw, worker)
        object.__setattr__(self, "_stored", isinstance(raw, CursorStoreResultMixIn))

    def fetchone(self) -> Any:
        """The next row."""
        return self._raw.fetchone() if self._stored else super().fetchone()

    def fetchmany(self, size: int | None = None) -> Any:
        """Up to ``size`` rows (default: ``arraysize``)."""
        if not self._stored:
            return super().fetchmany(size)
        return self._raw.fetchmany() if size is None else self._raw.fetchmany(size)

    def fetchall(self) -> Any:
        """The remaining rows."""
        return self._raw.fetchall() if self._stored else super().fetchall()

    def close(self) -> None:
        """Close; only a cursor with results still on the wire needs the worker."""
        if self._stored and not self._worker.busy and not self._results_pending():
            self._raw.close()
        else:
            super().close()

    def nextset(self) -> Any:
        """Move to the next result set of a multi-statement query (reads the network)."""
        return self._worker.run(self._raw.nextset)

    def callproc(self, procname: str, args: Any = ()) -> Any:
        """Call a stored procedure."""
        return self._worker.run(self._raw.callproc, procname, args)

    def _results_pending(self) -> bool:
        # A multi-statement query ("SET a; SET b") leaves its later results on
        # the wire; closing the cursor reads and discards them.
        connection = self._raw.connection
        return connection is not None and bool(connection.more_results())

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_stored":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


class LinkWatch:
    """A connection's worker that notes when a call fails because the link broke.

    mysqlclient's ``errno()`` is reset by the next call (closing a cursor
    is one), so the pool could not tell afterwards; we note it as it happens.
    """

    def __init__(self, worker: Worker, conn: MySQLConnection) -> None:
        self._worker = worker
        self._conn = conn

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``Worker.run``, marking the connection broken on a link error.

        A switch of autocommit the connection put off (``MySQLConnection.
        autocommit``) is made first, on the worker, in the same hop.
        """
        conn = self._conn
        if conn.pending_autocommit is not None:
            fn = conn.with_autocommit(fn)
        conn.calls += 1
        try:
            return self._worker.run(fn, *args, **kwargs)
        except MySQLdb.InterfaceError:
            self._conn.broken = True
            raise
        except MySQLdb.OperationalError as exc:
            if exc.args and exc.args[0] in LINK_ERRORS:
                self._conn.broken = True
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._worker, name)


class MySQLConnection(ThreadedConnection):
    """A mysqlclient connection whose network calls run on its worker thread.

    Also carries what tandem's pool needs to know about it: whether its last
    user gave it back clean, whether its link broke, whether a kill is still
    in flight, and whether Django has set up its session.
    """

    _own = ThreadedConnection._own | {
        "released_clean",
        "broken",
        "killer",
        "session_ready",
        "pending_autocommit",
        "calls",
    }

    # Set by the wrapper that gives the connection back to the pool: idle,
    # outside any transaction, in autocommit mode.
    released_clean = False
    # A call failed because the server or the network dropped the link.
    broken = False
    # The QueryKiller armed for this connection's worker, if any.
    killer: QueryKiller | None = None
    # True once Django's init_connection_state has set up the session.
    session_ready = False
    # An autocommit switch not sent yet: it goes with the next call to the server.
    pending_autocommit: bool | None = None
    # Calls made through the worker (in the bridge, each one a thread hop).
    calls = 0

    def __init__(self, raw: Any, worker: Worker) -> None:
        # LinkWatch stands in for the Worker it wraps (same calls, by delegation).
        super().__init__(raw, LinkWatch(worker, self))  # type: ignore[arg-type]

    def cursor(self, *args: Any, **kwargs: Any) -> MySQLCursor:
        """A cursor; mysqlclient creates it without talking to the server."""
        return MySQLCursor(self._raw.cursor(*args, **kwargs), self.worker)

    def autocommit(self, on: bool) -> None:
        """Switch autocommit; in the bridge, with the next call to the server.

        Django switches it off to open a transaction and on again after the
        commit: each switch is a round trip of its own, and in the bridge a
        thread hop too. Put off, the switch is sent just before the next
        statement (or commit, rollback, ping), on the worker, in that call's
        hop: the transaction still begins before its first statement, and a
        connection given back with autocommit on is switched back before its
        next user's first statement. Outside the bridge it is sent at once.
        """
        on = bool(on)
        if not in_bridge():
            self.pending_autocommit = None
            if bool(self._raw.get_autocommit()) != on:
                self._raw.autocommit(on)
            return
        self.pending_autocommit = None if bool(self._raw.get_autocommit()) == on else on

    def close(self) -> None:
        """Close; a switch of autocommit not sent yet no longer matters."""
        self.pending_autocommit = None
        super().close()

    def get_autocommit(self) -> bool:
        """Autocommit as Django set it (a switch not sent yet included)."""
        pending = self.pending_autocommit
        return bool(self._raw.get_autocommit()) if pending is None else pending

    def with_autocommit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, preceded by the autocommit switch still to send (on the worker)."""

        def switch_then_call(*args: Any, **kwargs: Any) -> Any:
            pending = self.pending_autocommit
            if pending is not None:
                # Cleared only once sent: a call cancelled before it ran leaves
                # the switch for the next one.
                self._raw.autocommit(pending)
                self.pending_autocommit = None
            return fn(*args, **kwargs)

        return switch_then_call

    def ping(self, *args: Any) -> Any:
        """Check the server answers (raises if not)."""
        return self.worker.run(self._raw.ping, *args)

    @property
    def is_reusable(self) -> bool:
        """Open, idle on a finished worker, given back clean, not mid-kill."""
        # Checked first: mysqlclient refuses any call while its worker runs one.
        if self.worker.busy or self.broken or not self.released_clean:
            return False
        if self.killer is not None and not self.killer.settled:
            return False
        return bool(self._raw.open) and self.get_autocommit()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._raw, name)
        if name in BLOCKING_METHODS:
            return lambda *args, **kwargs: self.worker.run(attr, *args, **kwargs)
        return attr


def kill_params(conn_params: dict[str, Any]) -> dict[str, Any]:
    """Connection parameters for the killer: same server and credentials, nothing else."""
    params = {key: value for key, value in conn_params.items() if key not in ("init_command", "conv")}
    params.pop("database", None)  # KILL needs none, and it may be gone
    params.pop("db", None)
    params.setdefault("connect_timeout", KILL_CONNECT_TIMEOUT)
    return params


def kill_query(params: dict[str, Any], thread_id: int) -> None:
    """On a fresh connection, stop whatever server thread ``thread_id`` runs."""
    conn = MySQLdb.connect(**params)
    try:
        conn.query(f"KILL QUERY {int(thread_id)}")
    finally:
        conn.close()


def _in_thread(fn: Callable[..., Any], *args: Any) -> Future:
    """Run ``fn`` on a short-lived thread; its outcome arrives in the Future."""
    done: Future = Future()

    def run() -> None:
        done.set_running_or_notify_cancel()
        try:
            done.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever waits
            done.set_exception(exc)

    threading.Thread(target=run, name="tandem-mysql-kill", daemon=True).start()
    return done


class QueryKiller:
    """A worker's interrupt: kill the running query with ``KILL QUERY``.

    Called by the worker when the task awaiting its call is cancelled. The
    kill runs on a thread of its own (opening a connection would block the
    loop); we wait for it in the bridge, so it has landed before the
    connection is anyone's again and can never hit a later statement.
    """

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.thread_id: int | None = None
        self.pending: Future | None = None

    def arm(self, raw: Any) -> Any:
        """Note the server thread of a new connection; returns it.

        Read now: while a call runs, mysqlclient refuses every other one on
        that connection, ``thread_id()`` included.
        """
        self.thread_id = raw.thread_id()
        return raw

    @property
    def settled(self) -> bool:
        """No kill was sent, or the last one has finished."""
        return self.pending is None or self.pending.done()

    def __call__(self, raw: Any = None) -> None:
        """Kill the connection's running query; wait until the server has taken it."""
        if self.thread_id is None:
            return
        self.pending = done = _in_thread(kill_query, self.params, self.thread_id)
        try:
            if in_bridge():
                await_(asyncio.shield(asyncio.wrap_future(done)))
            else:
                done.result(KILL_CONNECT_TIMEOUT * 2)
        except asyncio.CancelledError:
            # Cancelled again while waiting: the kill still lands, and until
            # it has, the pool will not reuse the connection (``settled``).
            pass
        except Exception as exc:
            logger.warning("KILL QUERY for MySQL thread %s failed: %s", self.thread_id, exc)
