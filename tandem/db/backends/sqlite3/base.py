"""``ENGINE = "tandem.db.backends.sqlite3"``: Django's SQLite backend, off the loop.

Everything is Django's SQLite backend: its connect (functions, PRAGMAs,
``init_command``), adapters and converters, cursor wrapper, transaction
handling, introspection and schema editor. The differences:

* each connection has a worker thread; inside ``tandem.native()`` short
  statements run on the loop thread under a time budget
  (``OPTIONS["loop_budget_ms"]``) and the calls that may block run on the
  worker while the loop awaits them; outside they run in the calling thread
  as usual (see ``connection.py`` and docs/concepts/sqlite.md);
* on an event loop connections come from tandem's per-loop pool, configured
  by ``OPTIONS["pool"]``;
* defaults for many concurrent writers (each overridable in ``OPTIONS``):
  WAL journal for file databases, a 20 s busy timeout and ``BEGIN IMMEDIATE``
  transactions (see ``get_connection_params``).
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.validation import BaseDatabaseValidation
from django.db.backends.sqlite3 import base as django_sqlite

from tandem.bridge import in_bridge
from tandem.db.backends.base import TandemValidationMixin, TandemWrapperMixin, bridgeable
from tandem.db.backends.sqlite3.connection import SQLiteConnection
from tandem.db.backends.sqlite3.creation import DatabaseCreation
from tandem.db.backends.sqlite3.loop import loop_factory

__all__ = ["DatabaseValidation", "DatabaseWrapper", "is_private_memory_db", "loop_budget"]

# Seconds a statement waits for another connection's write lock before
# "database is locked" (sqlite3's own default is 5).
DEFAULT_TIMEOUT = 20.0
# Transactions take the write lock when they begin. With DEFERRED ones, two
# transactions that both read and then write deadlock: neither can upgrade
# while the other holds its read snapshot, and SQLite fails one at once with
# "database is locked", whatever the busy timeout. IMMEDIATE makes writers
# queue at BEGIN, where the busy timeout applies.
DEFAULT_TRANSACTION_MODE = "IMMEDIATE"
# Readers never block the writer nor the writer readers.
WAL = "PRAGMA journal_mode = WAL"
# How long a statement may run on the loop thread, in ms, before a read is
# stopped and run again on the worker, or a write in a transaction lets the
# loop run (see loop.py). A hop to the worker costs 0.05-0.15 ms: a
# statement longer than the budget gains little from avoiding it.
DEFAULT_LOOP_BUDGET_MS = 1.0


def is_private_memory_db(name: Any) -> bool:
    """True if every connection to database ``name`` gets a database of its own."""
    if isinstance(name, Path):
        return False
    name = str(name)
    in_memory = name == ":memory:" or name.startswith("file::memory:") or "mode=memory" in name
    return in_memory and "cache=shared" not in name


def _read_only(name: Any) -> bool:
    return not isinstance(name, Path) and ("mode=ro" in str(name) or "immutable=1" in str(name))


def _shared_cache(name: Any) -> bool:
    return not isinstance(name, Path) and "cache=shared" in str(name)


def loop_budget(alias: str, options: dict) -> float:
    """``OPTIONS["loop_budget_ms"]``, validated, in seconds (0: never on the loop)."""
    value = options.get("loop_budget_ms", DEFAULT_LOOP_BUDGET_MS)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['loop_budget_ms'] must be a finite number of "
            f"milliseconds >= 0 (0: every statement runs on the worker thread), not {value!r}."
        )
    return value / 1000


class DatabaseValidation(TandemValidationMixin, BaseDatabaseValidation):
    """Django's backend checks, plus tandem's."""


# bridgeable() makes its base at import time: to mypy, Any.
class _WorkerWrapper(bridgeable(django_sqlite.DatabaseWrapper)):  # type: ignore[misc]
    """Django's SQLite wrapper whose connections come with a worker thread."""

    if TYPE_CHECKING:  # Django's attribute (5.2+), set by its get_connection_params()
        init_commands: list[str]

    # Seconds a statement may run on the loop (get_connection_params sets it).
    loop_budget = DEFAULT_LOOP_BUDGET_MS / 1000

    def get_new_connection(self, conn_params):
        """Django's connect, run on the new connection's worker in the bridge.

        A connection opened in the bridge (a task's, from the pool) runs short
        statements on the loop, unless the budget is 0 or the database is in
        memory or a shared cache.
        """
        budget = self.loop_budget if in_bridge() and self._may_use_the_loop(conn_params) else 0.0
        if budget:
            factory = loop_factory(conn_params.get("factory"))
            if factory is None:  # the user's factory is not a sqlite3.Connection
                budget = 0.0
            else:
                conn_params = {**conn_params, "factory": factory}
        connect = super().get_new_connection
        return SQLiteConnection.open(
            lambda: connect(conn_params), loop_budget=budget, database=str(conn_params["database"])
        )

    def _may_use_the_loop(self, conn_params: dict) -> bool:
        # A shared cache serialises its connections' statements with a mutex
        # held for a whole step: a statement on the loop would wait for it.
        name = conn_params["database"]
        return not (self.is_in_memory_db() or is_private_memory_db(name) or _shared_cache(name))


class DatabaseWrapper(TandemWrapperMixin, _WorkerWrapper):
    """Django's SQLite ``DatabaseWrapper`` on the event loop."""

    creation_class = DatabaseCreation
    validation_class = DatabaseValidation

    def get_connection_params(self) -> dict:
        """Django's parameters, minus ``pool``, plus tandem's defaults.

        Applied to a copy: the settings dict is never changed. Set
        ``OPTIONS["timeout"]``, ``OPTIONS["transaction_mode"]`` (``None`` for
        SQLite's DEFERRED) or a ``journal_mode`` in ``OPTIONS["init_command"]``
        to choose otherwise. ``OPTIONS["loop_budget_ms"]`` is tandem's, not
        sqlite3's: it goes to ``loop_budget``.
        """
        options = self.settings_dict["OPTIONS"]
        params = super().get_connection_params()  # sets transaction_mode, init_commands
        params.pop("pool", None)
        self.loop_budget = loop_budget(self.alias, options)
        params.pop("loop_budget_ms", None)
        params.setdefault("timeout", DEFAULT_TIMEOUT)
        if "transaction_mode" not in options:
            self.transaction_mode = DEFAULT_TRANSACTION_MODE
        if self._wal_by_default(options):
            self.init_commands = [WAL, *self.init_commands]
        return params

    def _wal_by_default(self, options: dict) -> bool:
        name = self.settings_dict["NAME"]
        if self.is_in_memory_db() or is_private_memory_db(name) or _read_only(name):
            return False
        return "journal_mode" not in str(options.get("init_command", "")).lower()

    def get_new_connection(self, conn_params):
        """Open a connection; refuse a private in-memory database for tasks."""
        if self.task_owned and is_private_memory_db(conn_params["database"]):
            raise ImproperlyConfigured(
                f"DATABASES[{self.alias!r}]['NAME'] is {conn_params['database']!r}: every "
                "connection to it is a separate, empty database, and on an event loop each "
                "task uses a pooled connection of its own. Use a file, or a shared in-memory "
                "database such as 'file:NAME?mode=memory&cache=shared' (Django's in-memory "
                "test database is one)."
            )
        return super().get_new_connection(conn_params)

    # -- pool hooks -----------------------------------------------------------
    @staticmethod
    def connection_is_reusable(conn: SQLiteConnection) -> bool:
        """Open, its worker idle, never interrupted, outside a transaction, no statement left mid-way.

        A connection a cancelled task left with a statement mid-way is closed
        (on its worker) rather than reused: see ``SQLiteConnection.left_mid_statement``.
        """
        if conn.worker.busy or conn.interrupted or conn.left_mid_statement:
            return False
        try:
            return not conn.raw.in_transaction
        except sqlite3.ProgrammingError:  # closed
            return False

    @staticmethod
    def close_raw_connection(conn: SQLiteConnection) -> None:
        """Close on the connection's worker, without waiting for it."""
        conn.close_later()

    def ping_raw_connection(self, conn: SQLiteConnection) -> None:
        """Run ``SELECT 1``."""
        cursor = conn.cursor()
        try:
            cursor.execute("SELECT 1").fetchone()
        finally:
            cursor.close()
