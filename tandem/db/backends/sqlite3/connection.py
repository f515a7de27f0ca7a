"""A sqlite3 connection driven from the bridge: short statements on the loop, the rest on a worker.

``SQLiteConnection`` wraps Django's sqlite3 connection with a worker thread
of its own and decides, statement by statement, where each runs: on the
loop under a budget (``loop.py``) or on the worker, waiting out other
connections' locks (``busy.py``). See docs/concepts/sqlite.md.
"""

from __future__ import annotations

import sqlite3
import time
import weakref
from collections.abc import Callable
from typing import Any

from tandem.bridge import in_bridge
from tandem.db.backends.sqlite3.busy import BusyWaitMixin, lock_conflict
from tandem.db.backends.sqlite3.cursor import SQLiteCursor
from tandem.db.backends.sqlite3.loop import (
    INTERRUPT,
    PROGRESS_STEPS,
    RERUN,
    YIELD,
    LoopConnectionMixin,
    LoopState,
)
from tandem.db.backends.sqlite3.statements import BEGIN, READ, SAVEPOINT, WRITE, Memory, memories
from tandem.db.threaded import ThreadedConnection, Worker

__all__ = ["CountingWorker", "SQLiteConnection"]


class CountingWorker(Worker):
    """A worker that counts the calls handed to its thread (``hops``, for tests and benchmarks)."""

    def __init__(self) -> None:
        super().__init__()
        self.hops = 0

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``Worker.run``, counted when it hops.

        A call awaited to its end leaves the thread idle: forgetting it makes
        ``busy``, asked before every statement that may run on the loop, a
        test of None instead of a look at a future under its lock.
        """
        if not in_bridge() or self._stopped:
            return fn(*args, **kwargs)
        self.hops += 1
        result = super().run(fn, *args, **kwargs)  # if it raises, the call may still run
        self._last = None
        return result


def _close_all(connections: list[sqlite3.Connection]) -> None:
    # On the worker: close and let go of driver connections nobody will use.
    for raw in connections:
        try:
            raw.close()
        except sqlite3.Error:
            pass
    connections.clear()


class SQLiteConnection(BusyWaitMixin, ThreadedConnection):
    """A sqlite3 connection with its own worker thread (see docs/concepts/sqlite.md)."""

    _own = ThreadedConnection._own | {
        "_interrupts",
        "_busy_ms",
        "_rest_ms",
        "_pragma",
        "_loop",
        "_memory",
        "_mid_statement",
    }

    def __init__(self, raw: sqlite3.Connection, worker: Worker) -> None:
        super().__init__(raw, worker)
        object.__setattr__(self, "_interrupts", 0)  # interrupt() calls so far
        # Cursors that may have left their statement mid-way (a WeakSet, made on first use).
        object.__setattr__(self, "_mid_statement", None)
        object.__setattr__(self, "_busy_ms", None)  # the busy timeout, read lazily
        object.__setattr__(self, "_rest_ms", None)  # the busy timeout between calls: 0 if _loop
        object.__setattr__(self, "_pragma", None)  # a cursor for PRAGMA busy_timeout
        object.__setattr__(self, "_loop", None)  # a LoopState if statements may run on the loop
        object.__setattr__(self, "_memory", None)  # the database's Memory, with _loop

    @classmethod
    def open(
        cls,
        connect: Callable[[], sqlite3.Connection],
        interrupt=None,
        *,
        loop_budget: float = 0.0,
        database: str = "",
    ) -> SQLiteConnection:
        """Run ``connect()`` (Django's own, on the worker in the bridge) and wrap it.

        With ``loop_budget`` (seconds) > 0, a connection opened in the bridge
        whose driver connection was made with ``loop_factory()`` runs short
        statements on the loop; ``database`` names what it remembers them by.
        ``interrupt`` is ignored: ``SQLiteConnection.interrupt`` is always used.
        """
        worker = CountingWorker()
        made: list[sqlite3.Connection] = []

        def connect_and_keep() -> sqlite3.Connection:
            made.append(connect())
            return made[-1]

        try:
            raw = worker.run(connect_and_keep)
            conn = cls(raw, worker)
            if loop_budget > 0 and in_bridge() and isinstance(raw, LoopConnectionMixin):
                worker.run(conn._enable_loop, loop_budget, database)
        except BaseException:
            # Failed or cancelled once the driver connection was made (or
            # while it was being made): close it on the worker, after that
            # call, rather than leave it to be freed, and so closed, on the loop.
            if made or worker.busy:
                worker.defer(_close_all, made)
            worker.stop()
            raise
        worker.interrupt = conn.interrupt
        return conn

    def _enable_loop(self, budget: float, database: str) -> None:
        # On the worker, once Django's connect has returned: its functions
        # are registered already, unguarded; the busy timeout goes to 0
        # between calls, and each call that may wait sets it for its time.
        state = LoopState(budget, self.worker)
        self._busy_timeout_ms()
        self._set_busy_timeout(0)
        object.__setattr__(self, "_rest_ms", 0)
        object.__setattr__(self, "_loop", state)
        object.__setattr__(self, "_memory", memories.setdefault(database, Memory()))
        self._raw._tandem_state = state

    # -- calls that stay on the calling thread ---------------------------------
    def cursor(self, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """A cursor: creating one does no I/O, so no hop."""
        return SQLiteCursor(self._raw.cursor(*args, **kwargs), self)

    def interrupt(self) -> None:
        """Abort the running statement and any lock wait (safe from any thread)."""
        object.__setattr__(self, "_interrupts", self._interrupts + 1)
        self._raw.interrupt()

    @property
    def interrupted(self) -> bool:
        """True once ``interrupt()`` was called.

        The pool does not reuse such a connection: SQLite keeps an interrupt
        pending until none of the connection's statements is running, and a
        cursor left unfinished somewhere would make it fail every statement.
        """
        return self._interrupts > 0

    def note_mid_statement(self, cursor: SQLiteCursor) -> None:
        """Remember ``cursor``: its statement may be mid-way (rows unread, a call abandoned)."""
        cursors = self._mid_statement
        if cursors is None:
            cursors = weakref.WeakSet()
            object.__setattr__(self, "_mid_statement", cursors)
        cursors.add(cursor)

    @property
    def left_mid_statement(self) -> bool:
        """True while a cursor of this connection has a statement neither finished nor closed.

        Rows not all fetched, or a call a cancelled task abandoned. The pool
        does not reuse such a connection: sqlite3 resets a statement when its
        cursor is closed or freed, which takes the connection's mutex, so a
        cursor the garbage collector frees later on the loop thread would
        wait for whatever the worker then runs for the connection's next
        user, a one-second query say.
        """
        cursors = self._mid_statement
        return cursors is not None and any(cursor._more for cursor in cursors)

    @property
    def runs_on_loop(self) -> bool:
        """True if short statements of this connection run on the loop thread."""
        return self._loop is not None

    @property
    def hops(self) -> int:
        """Calls handed to the worker thread from the bridge so far (connecting included)."""
        return self.worker.hops

    def __setattr__(self, name: str, value: Any) -> None:
        # Django sets isolation_level on every connect() (autocommit on): it
        # only does I/O (a COMMIT) inside a transaction, so skip the hop.
        if name == "isolation_level" and not self._raw.in_transaction:
            setattr(self._raw, name, value)
        elif name in self._own:
            object.__setattr__(self, name, value)
        else:
            # sqlite3: isolation_level / autocommit setters may run BEGIN or COMMIT.
            self.hop(setattr, self._raw, name, value)

    # -- where a statement runs ---------------------------------------------------
    def lane_for(self, kind: str, sql: str) -> str | None:
        """How a statement of ``kind`` runs on the loop now, or None: on the worker."""
        state = self._loop
        if state is None or self.worker.busy or self._interrupts:
            return None
        memory = self._memory
        if kind is READ:
            if sql in memory.long or sql in memory.calls_python:
                return None
            return INTERRUPT
        if kind is BEGIN:
            return INTERRUPT
        if kind is WRITE or kind is SAVEPOINT:
            # Outside a transaction a write commits (the worker's job);
            # inside one it may be paused, never stopped. One that ran long
            # is not started on the loop again: its work would all be the loop's.
            if not self._raw.in_transaction or sql in memory.long:
                return None
            return YIELD
        return None

    def on_loop(self, lane: str, sql: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(*args)`` on the loop, or ``RERUN`` if it must run again on the worker."""
        state = self._loop
        raw = self._raw
        state.lane = lane
        in_transaction = raw.in_transaction
        state.deadline = time.perf_counter() + state.budget
        raw.set_progress_handler(state.handler, PROGRESS_STEPS)
        try:
            return call(*args, **kwargs)
        except sqlite3.Error as exc:
            stash = state.stash
            if stash is not None:
                state.stash = None
                raise stash from None
            if state.overran:
                Memory.note(self._memory.long, sql)
            elif state.left:
                Memory.note(self._memory.calls_python, sql)
            elif not (isinstance(exc, sqlite3.OperationalError) and lock_conflict(exc) is not None):
                raise
            # Stopped, or failed taking a lock, before changing anything: SQLite
            # rolls back nothing for a read, or for a write that never began.
            # Should a statement taken for a read have written after all, its
            # interrupt rolled back the whole transaction: say so, never run on.
            if in_transaction and not raw.in_transaction:
                raise sqlite3.OperationalError(
                    "tandem stopped a statement on the event loop and SQLite rolled back the "
                    f"whole transaction: {sql[:200]!r} (set OPTIONS['loop_budget_ms'] to 0 "
                    "to run every statement on the worker thread)"
                ) from exc
            return RERUN
        finally:
            raw.set_progress_handler(None, 0)
            if state.yielded:
                Memory.note(self._memory.long, sql)
            state.lane = None
            state.overran = state.left = state.yielded = False
            state.stash = None

    def hop(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(*args)`` on the worker in the bridge (else right here), with the real busy timeout."""
        if self._rest_ms is None or self._rest_ms == self._busy_ms:
            return self.worker.run(call, *args, **kwargs)
        return self.worker.run(self._with_busy_timeout, call, args, kwargs)

    def direct(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(*args)`` in the calling thread, outside the bridge."""
        if self._loop is None:
            return call(*args, **kwargs)  # Django's stock path
        return self._with_busy_timeout(call, args, kwargs)

    # -- calls that may block ----------------------------------------------------
    def execute(self, sql: str, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """sqlite3's shortcut: a new cursor that has run ``sql``."""
        return self.cursor().execute(sql, *args, **kwargs)

    def executemany(self, sql: str, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """sqlite3's shortcut: a new cursor that has run ``sql`` for each parameter set."""
        return self.cursor().executemany(sql, *args, **kwargs)

    def commit(self) -> None:
        """Commit, on the worker in the bridge (waiting out shared-cache table locks)."""
        if in_bridge():
            self.worker.run(self.wait_for_locks, self._raw.commit, (), {})
        else:
            self.direct(self._raw.commit)

    def rollback(self) -> None:
        """Roll back, on the worker in the bridge."""
        self.hop(self._raw.rollback)

    def executescript(self, script: str) -> SQLiteCursor:
        """sqlite3's shortcut: run several statements."""
        return self.cursor().executescript(script)

    def backup(self, target: Any, **kwargs: Any) -> None:
        """Copy this database into ``target`` (a sqlite3 connection)."""
        target = getattr(target, "raw", target)
        self.hop(self._raw.backup, target, **kwargs)

    def iterdump(self, *args: Any, **kwargs: Any):
        """The database as SQL statements (read on the worker, all at once)."""
        return iter(self.hop(lambda: list(self._raw.iterdump(*args, **kwargs))))

    def load_extension(self, *args: Any, **kwargs: Any) -> None:
        """Load a SQLite extension (reads a shared library)."""
        self.hop(self._raw.load_extension, *args, **kwargs)

    def close_later(self) -> None:
        """Close on the worker after any call it is running; never wait for it.

        For the pool: the loop must not block on a connection a cancelled
        call may still hold, nor on the WAL checkpoint that closing the last
        connection to a database performs. Cursors left mid-statement are
        closed there first, and their driver cursors leave the loop's hands
        (``SQLiteCursor.hand_over``): freed on the loop before that, each
        would wait for the worker.
        """
        left = self._take_mid_statement()
        try:
            self.worker.defer(self._close_quietly, left)
        except RuntimeError:  # the interpreter is exiting: no new threads
            self._close_quietly(left)
        finally:
            self.worker.stop()

    def _take_mid_statement(self) -> list[sqlite3.Cursor]:
        cursors = self._mid_statement
        if not cursors:
            return []
        object.__setattr__(self, "_mid_statement", None)
        return [cursor.hand_over() for cursor in list(cursors) if cursor._more]

    def _close_quietly(self, left: list[sqlite3.Cursor] | None = None) -> None:
        # Statements first: closed with the connection, sqlite3 would leave
        # them to whoever frees their cursors, the loop perhaps.
        for raw in left or ():
            try:
                raw.close()
            except sqlite3.Error:
                pass
        if left:
            left.clear()  # the last references, dropped on this thread
        try:
            self._raw.close()
        except sqlite3.Error:  # broken already: nothing left to close
            pass
