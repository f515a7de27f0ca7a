"""The cursor of a SQLite connection driven from the bridge.

A statement's first ``PREFETCH_ROWS`` rows come back with ``execute()``, so
fetching them, and closing a finished cursor, needs no thread hop. The
connection decides where each statement runs (the loop or its worker); the
cursor keeps track of statements left mid-way. See docs/concepts/sqlite.md.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from tandem.bridge import in_bridge
from tandem.db.backends.sqlite3.loop import RERUN, LoopState
from tandem.db.backends.sqlite3.statements import OTHER, READ, WRITE, statement_kind
from tandem.db.threaded import ThreadedCursor, Worker

__all__ = ["PREFETCH_ROWS", "CursorConnection", "SQLiteCursor"]

# Rows fetched together with execute(): Django reads results in chunks of
# this size (GET_ITERATOR_CHUNK_SIZE), so most queries end in one chunk.
PREFETCH_ROWS = 100


class CursorConnection(Protocol):
    """What a ``SQLiteCursor`` asks of its connection, a ``SQLiteConnection``."""

    worker: Worker
    _loop: LoopState | None  # not None if statements may run on the loop

    def lane_for(self, kind: str, sql: str) -> str | None: ...

    def on_loop(self, lane: str, sql: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    def hop(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    def direct(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...

    def wait_for_locks(self, call: Callable[..., Any], args: tuple, kwargs: dict) -> Any: ...

    def note_mid_statement(self, cursor: SQLiteCursor) -> None: ...


class _HandedOverCursor:
    """What a ``SQLiteCursor`` holds once its driver cursor went to the worker to be closed."""

    description = None
    rowcount = -1
    lastrowid = None

    def close(self) -> None:
        """Closed already."""

    def __getattr__(self, name: str) -> Any:
        raise sqlite3.ProgrammingError("Cannot operate on a closed cursor.")

    def __setattr__(self, name: str, value: Any) -> None:
        raise sqlite3.ProgrammingError("Cannot operate on a closed cursor.")


_HANDED_OVER = _HandedOverCursor()


def _passed_through(name: str, doc: str) -> property:
    """An attribute of the sqlite3 cursor underneath, read and written through."""

    def get(cursor: SQLiteCursor) -> Any:
        return getattr(cursor._raw, name)

    def set_(cursor: SQLiteCursor, value: Any) -> None:
        setattr(cursor._raw, name, value)

    return property(get, set_, doc=doc)


class SQLiteCursor(ThreadedCursor):
    """A sqlite3 cursor driven from the bridge with as few thread hops as possible.

    Rows fetched ahead wait in ``_rows``; ``_more`` says whether the
    statement may still have rows the driver has not handed over, and
    ``_read`` whether it is a read the loop ran (closing it early is no I/O).
    This runs for every statement: attributes are plain, and the only ones
    sqlite3 lets you set on a cursor (``arraysize``, ``row_factory``) are
    forwarded by properties.
    """

    __setattr__ = object.__setattr__  # type: ignore[assignment]  # plain attributes, not the driver's

    def __init__(self, raw: sqlite3.Cursor, conn: CursorConnection) -> None:
        self._raw = raw
        self._worker = conn.worker
        self._conn = conn
        self._rows: deque = deque()
        self._more = False
        self._read = False

    arraysize = _passed_through("arraysize", "sqlite3's ``arraysize``: rows ``fetchmany()`` returns.")
    row_factory = _passed_through("row_factory", "sqlite3's ``row_factory``.")

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """Run a statement; in the bridge on the loop or the worker, with its first rows."""
        rows = self._rows
        if rows:
            rows.clear()
        conn = self._conn
        if not in_bridge():
            self._more, self._read = True, False
            if conn._loop is None:
                self._raw.execute(sql, *args, **kwargs)  # Django's stock path
            else:
                conn.direct(self._raw.execute, sql, *args, **kwargs)
            return self
        kind = statement_kind(sql)
        lane = conn.lane_for(kind, sql)
        fetched = RERUN
        try:
            if lane is not None:
                # Until it returns, the statement may hold rows (or still run, if
                # we are cancelled): close() must then go through the worker.
                self._more, self._read = True, False
                fetched = conn.on_loop(lane, sql, self._prefetch, sql, args, kwargs)
            if fetched is RERUN:  # wait_for_locks sets the busy timeout itself: no hop()
                self._more, self._read = True, False
                fetched = conn.worker.run(self._execute_and_prefetch, sql, args, kwargs)
            else:
                self._read = kind is READ
        except BaseException:
            self._note_if_mid_statement()
            raise
        if fetched:
            rows.extend(fetched)  # type: ignore[arg-type]  # rows, once not RERUN
            if len(fetched) == PREFETCH_ROWS:  # type: ignore[arg-type]  # the driver may hold more
                self._more = True
                conn.note_mid_statement(self)
                return self
        self._more = False
        return self

    def _prefetch(self, sql: str, args: tuple, kwargs: dict) -> list | None:
        # None: the statement returns no rows.
        self._raw.execute(sql, *args, **kwargs)
        if self._raw.description is None:
            return None
        return self._raw.fetchmany(PREFETCH_ROWS)

    def _execute_and_prefetch(self, sql: str, args: tuple, kwargs: dict) -> list | None:
        # On the worker.
        return self._conn.wait_for_locks(self._prefetch, (sql, args, kwargs), {})

    def executemany(self, sql: str, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """Run a statement for each parameter set (no rows come back)."""
        self._rows.clear()
        self._more = True
        self._read = False
        conn = self._conn
        if not in_bridge():
            conn.direct(self._raw.executemany, sql, *args, **kwargs)
        else:
            lane = conn.lane_for(WRITE if statement_kind(sql) is WRITE else OTHER, sql)
            done = RERUN
            try:
                if lane is not None:
                    done = conn.on_loop(lane, sql, self._raw.executemany, sql, *args, **kwargs)
                if done is RERUN:
                    conn.hop(self._raw.executemany, sql, *args, **kwargs)
            except BaseException:
                self._note_if_mid_statement()
                raise
        self._more = False
        return self

    def executescript(self, script: str) -> SQLiteCursor:
        """Run several statements (on the worker in the bridge)."""
        self._rows.clear()
        self._more = False
        self._conn.hop(self._raw.executescript, script)
        return self

    def fetchone(self) -> Any:
        """The next row, or None."""
        if self._rows:
            return self._rows.popleft()
        if not self._more:
            return None
        row = self._hop(self._raw.fetchone)
        self._more = row is not None
        return row

    def fetchmany(self, size: int | None = None) -> list:
        """Up to ``size`` rows (default ``arraysize``); fewer only at the end."""
        if size is None:
            size = self._raw.arraysize
        ahead = self._rows
        if len(ahead) <= size:
            rows = list(ahead)
            ahead.clear()
        else:
            rows = [ahead.popleft() for _ in range(size)]
        if len(rows) < size and self._more:
            wanted = size - len(rows)
            fetched = self._hop(self._raw.fetchmany, wanted)
            self._more = len(fetched) == wanted
            rows.extend(fetched)
        return rows

    def fetchall(self) -> list:
        """The remaining rows."""
        rows = list(self._rows)
        self._rows.clear()
        if self._more:
            rows.extend(self._hop(self._raw.fetchall))
            self._more = False
        return rows

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def close(self) -> None:
        """Close; a finished statement, or a read left early, closes without a hop."""
        self._rows.clear()
        if not self._more:
            # The driver has reset a finished statement already: no SQLite call.
            self._raw.close()
        elif self._read and not self._worker.busy:
            # Ending a read only lets go of its snapshot, and no call of the
            # worker's holds the connection (its mutex) meanwhile.
            self._raw.close()
            self._more = False
        else:
            # Only once closed is the statement finished: a close abandoned
            # by a cancelled task leaves it mid-way.
            self._hop(self._raw.close)
            self._more = False

    def _hop(self, call: Callable[..., Any], *args: Any) -> Any:
        # A call on the worker for a statement under way (fetching, closing).
        try:
            return self._conn.hop(call, *args)
        except BaseException:
            self._note_if_mid_statement()
            raise

    def _note_if_mid_statement(self) -> None:
        # A call failed or was abandoned: the statement may be left mid-way.
        if self._more:
            self._conn.note_mid_statement(self)

    def hand_over(self) -> sqlite3.Cursor:
        """Give up the driver's cursor, for the connection to close it on its worker.

        From then on this cursor is closed: ``close()`` does nothing, and
        nothing else of the loop's touches the driver's cursor again.
        """
        raw, self._raw = self._raw, _HANDED_OVER
        self._rows.clear()
        self._more = False
        return raw
