"""Waiting out other SQLite connections' locks, cancellably.

SQLite's busy timeout sleeps inside the C library, where a cancelled task
cannot stop it. ``BusyWaitMixin.wait_for_locks`` runs a call on the worker
with the real busy timeout, in short slices outside a transaction, and
retries shared-cache table locks SQLite does not wait for. See
docs/concepts/sqlite.md.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tandem.db.threaded import ThreadedConnection

__all__ = ["BUSY_SLICE_MS", "LOCKED_PAUSES", "SQLITE_LOCKED_SHAREDCACHE", "BusyWaitMixin", "lock_conflict"]

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


def lock_conflict(exc: sqlite3.OperationalError) -> int | None:
    """The result code if ``exc`` means "another connection holds the lock", else None."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # Python < 3.11 has no result codes; the message must do
        return _SQLITE_BUSY if str(exc) == "database is locked" else None
    return code if code in _RETRYABLE_CODES else None


if TYPE_CHECKING:
    # To mypy the mixin extends the connection it is mixed into.
    _ConnectionBase = ThreadedConnection
else:
    _ConnectionBase = object


class BusyWaitMixin(_ConnectionBase):
    """The busy wait of a ``SQLiteConnection``, on its worker.

    Keeps ``_busy_ms`` (the connection's busy timeout, read lazily),
    ``_rest_ms`` (the busy timeout between calls: 0 if statements may run on
    the loop, None until then) and ``_pragma`` (a cursor to set it); reads
    the connection's ``_raw``, ``_interrupts``, ``_memory`` and ``_loop``.
    """

    def _with_busy_timeout(self, call: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        # The real busy timeout for the call, the one between calls after it.
        self._set_busy_timeout(self._busy_ms)
        try:
            return call(*args, **kwargs)
        finally:
            self._set_busy_timeout(self._rest_ms)

    def wait_for_locks(self, call: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """Run ``call``, waiting out other connections' locks (see the module docstring).

        Runs on the worker, for calls made inside the bridge.
        """
        raw = self._raw
        real = self._busy_timeout_ms()
        rest = real if self._rest_ms is None else self._rest_ms
        sliced = not raw.in_transaction and real > BUSY_SLICE_MS
        wait = BUSY_SLICE_MS if sliced else real
        if wait != rest:
            self._set_busy_timeout(wait)
        try:
            return self._retry_on_lock(call, args, kwargs, sliced)
        finally:
            if wait != rest:
                self._set_busy_timeout(rest)

    def _retry_on_lock(self, call: Callable[..., Any], args: tuple, kwargs: dict, sliced: bool) -> Any:
        started = time.monotonic()
        seen = self._interrupts
        pauses = iter(LOCKED_PAUSES)
        memory = self._memory
        sql = args[0] if memory is not None and args and isinstance(args[0], str) else None
        long = memory.long if sql is not None else {}
        while True:
            try:
                result = call(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                code = lock_conflict(exc)
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
            else:
                if sql in long and time.monotonic() - started < self._loop.budget / 2:
                    long.pop(sql, None)  # short again: the loop may try it next time
                return result

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
