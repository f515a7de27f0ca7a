"""sqlite3 connections whose calls run on a worker thread inside the bridge.

sqlite3 does its work - file I/O, locking, waiting for other writers - in
blocking C calls. Inside ``tandem.native()`` they must not run on the loop
thread, so every connection gets a worker thread (``tandem.db.threaded``) and
the bridge greenlet awaits the call there. Outside the bridge every call runs
directly in the calling thread, as with Django's stock backend.

What this module adds to the generic ``ThreadedConnection``:

* **Few thread hops.** A hop costs tens of µs, more than a simple SQLite query.
  Creating a cursor does no I/O, so it stays on the loop; a statement that
  returns rows brings its first ``PREFETCH_ROWS`` rows back with ``execute()``;
  fetching rows already fetched and closing a finished cursor need no hop. A
  ``get()`` is one hop instead of five.
* **Cancellable lock waits.** SQLite's busy timeout sleeps inside the C
  library and ``interrupt()`` does not wake it, so a task cancelled while
  waiting for another writer would hang until the lock came free. Statements
  run outside a transaction (``BEGIN IMMEDIATE``, autocommit writes) wait in
  short slices instead, checking for cancellation between them, for as long
  as the connection's own busy timeout: SQLite's documentation allows
  retrying them. Statements inside a transaction keep SQLite's own wait.
* **Shared-cache table locks are waited for too.** Connections to a
  shared-cache database (Django's in-memory test database) lock tables
  against each other and SQLite reports a conflict at once, busy timeout or
  not. Those statements are retried, in a transaction or not, until the busy
  timeout, as ``sqlite3_unlock_notify()`` would do.
* **Closing never blocks the loop**: the pool closes connections on their
  worker (``close_later``).
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tandem.bridge import in_bridge
from tandem.db.threaded import ThreadedConnection, ThreadedCursor, Worker

__all__ = ["SQLiteConnection", "SQLiteCursor"]

# Rows fetched together with execute(): Django reads results in chunks of
# this size (GET_ITERATOR_CHUNK_SIZE), so most queries end in one chunk.
PREFETCH_ROWS = 100
# Longest uninterruptible wait for a lock, in ms: bounds how long a
# cancelled task waits for its connection.
BUSY_SLICE_MS = 50
# Our own pause between tries when SQLite reports a lock it does not wait
# for (a shared-cache table lock): grows from the first to the last, in s.
LOCKED_PAUSES = (0.001, 0.002, 0.005, 0.01, 0.02)

# Extended result codes that mean "another connection holds a lock": worth
# waiting out. Not SQLITE_BUSY_SNAPSHOT (a stale read snapshot never becomes
# fresh) nor plain SQLITE_LOCKED (a conflict inside this very connection).
_SQLITE_BUSY = 5
SQLITE_LOCKED_SHAREDCACHE = 262
_RETRYABLE_CODES = frozenset({_SQLITE_BUSY, 261, 773, SQLITE_LOCKED_SHAREDCACHE})  # + BUSY_RECOVERY, _TIMEOUT


def _lock_conflict(exc: sqlite3.OperationalError) -> int | None:
    """The result code if ``exc`` means "another connection holds the lock", else None."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # Python < 3.11 has no result codes; the message must do
        return _SQLITE_BUSY if str(exc) == "database is locked" else None
    return code if code in _RETRYABLE_CODES else None


class SQLiteCursor(ThreadedCursor):
    """A sqlite3 cursor driven from the bridge with as few thread hops as possible.

    Rows the worker fetched ahead wait in ``_rows``; ``_more`` says whether
    the statement may still have rows the driver has not handed over.
    """

    _own = frozenset({"_raw", "_worker", "_conn", "_rows", "_more"})

    def __init__(self, raw: sqlite3.Cursor, conn: SQLiteConnection) -> None:
        super().__init__(raw, conn.worker)
        self._conn = conn
        self._rows: deque = deque()
        self._more = False

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._own:
            object.__setattr__(self, name, value)
        else:
            setattr(self._raw, name, value)

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """Run a statement; in the bridge, on the worker, with its first rows."""
        self._rows.clear()
        # Until we know better, the driver may hold rows, or still be running
        # the statement if we are cancelled: close() must then go through the worker.
        self._more = True
        if not in_bridge():
            self._raw.execute(sql, *args, **kwargs)
            return self
        rows = self._worker.run(self._execute_and_prefetch, sql, args, kwargs)
        self._more = rows is not None and len(rows) == PREFETCH_ROWS
        if rows:
            self._rows.extend(rows)
        return self

    def _execute_and_prefetch(self, sql: str, args: tuple, kwargs: dict) -> list | None:
        # On the worker. None: the statement returns no rows.
        self._conn.wait_for_locks(self._raw.execute, sql, *args, **kwargs)
        if self._raw.description is None:
            return None
        return self._raw.fetchmany(PREFETCH_ROWS)

    def executemany(self, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """Run a statement for each parameter set (no rows come back)."""
        self._rows.clear()
        self._more = True
        self._worker.run(self._raw.executemany, *args, **kwargs)
        self._more = False
        return self

    def fetchone(self) -> Any:
        """The next row, or None."""
        if self._rows:
            return self._rows.popleft()
        if not self._more:
            return None
        row = self._worker.run(self._raw.fetchone)
        self._more = row is not None
        return row

    def fetchmany(self, size: int | None = None) -> list:
        """Up to ``size`` rows (default ``arraysize``); fewer only at the end."""
        if size is None:
            size = self._raw.arraysize
        rows = [self._rows.popleft() for _ in range(min(size, len(self._rows)))]
        if len(rows) < size and self._more:
            wanted = size - len(rows)
            fetched = self._worker.run(self._raw.fetchmany, wanted)
            self._more = len(fetched) == wanted
            rows.extend(fetched)
        return rows

    def fetchall(self) -> list:
        """The remaining rows."""
        rows = list(self._rows)
        self._rows.clear()
        if self._more:
            rows.extend(self._worker.run(self._raw.fetchall))
            self._more = False
        return rows

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def close(self) -> None:
        """Close; a cursor whose statement is finished closes without a hop."""
        self._rows.clear()
        if self._more:
            self._more = False
            self._worker.run(self._raw.close)
        else:
            # The driver has reset a finished statement already: closing
            # only drops Python references, no SQLite call can block.
            self._raw.close()


class SQLiteConnection(ThreadedConnection):
    """A sqlite3 connection with its own worker thread (see the module docstring)."""

    _own = ThreadedConnection._own | {"_interrupts", "_busy_ms", "_pragma"}

    def __init__(self, raw: sqlite3.Connection, worker: Worker) -> None:
        super().__init__(raw, worker)
        object.__setattr__(self, "_interrupts", 0)  # interrupt() calls so far
        object.__setattr__(self, "_busy_ms", None)  # the busy timeout, read lazily
        object.__setattr__(self, "_pragma", None)  # a cursor for PRAGMA busy_timeout

    @classmethod
    def open(cls, connect: Callable[[], sqlite3.Connection], interrupt=None) -> SQLiteConnection:
        """Run ``connect()`` (Django's own, on the worker in the bridge) and wrap it.

        ``interrupt`` is ignored: ``SQLiteConnection.interrupt`` is always used.
        """
        conn = super().open(connect)
        conn.worker.interrupt = conn.interrupt
        return conn

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

    def __setattr__(self, name: str, value: Any) -> None:
        # Django sets isolation_level on every connect() (autocommit on): it
        # only does I/O (a COMMIT) inside a transaction, so skip the hop.
        if name == "isolation_level" and not self._raw.in_transaction:
            setattr(self._raw, name, value)
        else:
            super().__setattr__(name, value)

    # -- calls that may block ----------------------------------------------------
    def execute(self, sql: str, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """sqlite3's shortcut: a new cursor that has run ``sql``."""
        return self.cursor().execute(sql, *args, **kwargs)

    def executemany(self, sql: str, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """sqlite3's shortcut: a new cursor that has run ``sql`` for each parameter set."""
        return self.cursor().executemany(sql, *args, **kwargs)

    def commit(self) -> None:
        """Commit (waiting out shared-cache table locks in the bridge)."""
        if in_bridge():
            self.worker.run(self.wait_for_locks, self._raw.commit)
        else:
            self._raw.commit()

    def executescript(self, script: str) -> SQLiteCursor:
        """sqlite3's shortcut: run several statements."""
        cursor = self.cursor()
        self.worker.run(cursor._raw.executescript, script)
        return cursor

    def backup(self, target: Any, **kwargs: Any) -> None:
        """Copy this database into ``target`` (a sqlite3 connection)."""
        target = getattr(target, "raw", target)
        self.worker.run(self._raw.backup, target, **kwargs)

    def iterdump(self, *args: Any, **kwargs: Any):
        """The database as SQL statements (read on the worker, all at once)."""
        return iter(self.worker.run(lambda: list(self._raw.iterdump(*args, **kwargs))))

    def load_extension(self, *args: Any, **kwargs: Any) -> None:
        """Load a SQLite extension (reads a shared library)."""
        self.worker.run(self._raw.load_extension, *args, **kwargs)

    def close_later(self) -> None:
        """Close on the worker after any call it is running; never wait for it.

        For the pool: the loop must not block on a connection a cancelled
        call may still hold, nor on the WAL checkpoint that closing the last
        connection to a database performs.
        """
        try:
            self.worker.defer(self._close_quietly)
        except RuntimeError:  # the interpreter is exiting: no new threads
            self._close_quietly()
        finally:
            self.worker.stop()

    def _close_quietly(self) -> None:
        try:
            self._raw.close()
        except sqlite3.Error:  # broken already: nothing left to close
            pass

    # -- on the worker -----------------------------------------------------------
    def wait_for_locks(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``call``, waiting out other connections' locks as described above.

        Runs on the worker, for calls made inside the bridge.
        """
        raw = self._raw
        sliced = not raw.in_transaction and self._busy_timeout_ms() > BUSY_SLICE_MS
        if sliced:
            self._set_busy_timeout(BUSY_SLICE_MS)
        try:
            return self._retry_on_lock(call, args, kwargs, sliced)
        finally:
            if sliced:
                self._set_busy_timeout(self._busy_ms)

    def _retry_on_lock(self, call: Callable[..., Any], args: tuple, kwargs: dict, sliced: bool) -> Any:
        started = time.monotonic()
        seen = self._interrupts
        pauses = iter(LOCKED_PAUSES)
        while True:
            try:
                return call(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                code = _lock_conflict(exc)
                if code is None:
                    raise
                if code != SQLITE_LOCKED_SHAREDCACHE and not (sliced and not self._raw.in_transaction):
                    raise  # SQLite waited its whole busy timeout already, or must not retry
                if time.monotonic() - started >= self._busy_timeout_ms() / 1000:
                    raise
                if self._interrupts != seen:
                    raise sqlite3.OperationalError("interrupted") from exc
                if code == SQLITE_LOCKED_SHAREDCACHE:  # SQLite did not wait: pause ourselves
                    time.sleep(next(pauses, LOCKED_PAUSES[-1]))

    def _busy_timeout_ms(self) -> int:
        if self._busy_ms is None:
            pragma = self._raw.cursor()
            object.__setattr__(self, "_pragma", pragma)
            object.__setattr__(self, "_busy_ms", pragma.execute("PRAGMA busy_timeout").fetchall()[0][0])
        return self._busy_ms

    def _set_busy_timeout(self, ms: int) -> None:
        # Read to the end: a statement left unfinished would keep an
        # interrupt() pending for every later statement (SQLite clears it
        # only when no statement of the connection is running).
        self._pragma.execute(f"PRAGMA busy_timeout = {int(ms)}").fetchall()
