"""tandem's sqlite3 driver, by the names it had as one module (for tests, benchmarks and users).

The driver is split into ``statements`` (what a statement may do),
``loop`` (statements on the loop under a budget), ``cursor``, ``busy``
(waiting out locks) and ``connection``. See docs/concepts/sqlite.md.
"""

from __future__ import annotations

from tandem.db.backends.sqlite3.busy import BUSY_SLICE_MS, LOCKED_PAUSES, SQLITE_LOCKED_SHAREDCACHE
from tandem.db.backends.sqlite3.connection import CountingWorker, SQLiteConnection
from tandem.db.backends.sqlite3.cursor import PREFETCH_ROWS, SQLiteCursor
from tandem.db.backends.sqlite3.loop import (
    INTERRUPT,
    PROGRESS_STEPS,
    YIELD,
    LoopConnectionMixin,
    LoopState,
    loop_factory,
)
from tandem.db.backends.sqlite3.statements import (
    BEGIN,
    LONG_MEMORY,
    OTHER,
    READ,
    SAVEPOINT,
    WRITE,
    memories,
    statement_kind,
)

__all__ = [
    "BEGIN",
    "BUSY_SLICE_MS",
    "INTERRUPT",
    "LOCKED_PAUSES",
    "LONG_MEMORY",
    "OTHER",
    "PREFETCH_ROWS",
    "PROGRESS_STEPS",
    "READ",
    "SAVEPOINT",
    "SQLITE_LOCKED_SHAREDCACHE",
    "WRITE",
    "YIELD",
    "CountingWorker",
    "LoopConnectionMixin",
    "LoopState",
    "SQLiteConnection",
    "SQLiteCursor",
    "loop_factory",
    "memories",
    "statement_kind",
]
