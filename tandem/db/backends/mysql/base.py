"""``ENGINE = "tandem.db.backends.mysql"``: Django's MySQL backend on worker threads.

Everything is Django's MySQL/MariaDB backend on mysqlclient: converters,
``OPTIONS`` (``init_command``, ``isolation_level``, ``charset``, ``ssl``,
``read_default_file``...), the ``sql_mode`` check, ``select_for_update``,
introspection and migrations. The differences:

* each driver connection is a ``MySQLConnection``: inside ``tandem.native()``
  its blocking calls run on a worker thread of its own and are awaited, so
  the loop keeps running; outside the bridge they run in the calling thread
  as usual;
* on an event loop connections come from tandem's per-loop pool, configured
  by ``OPTIONS["pool"]``; a pooled connection keeps the session Django set
  up when it was opened, like a persistent connection (``CONN_MAX_AGE``);
* a task cancelled mid-query kills the query on the server.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.mysql import base as django_mysql
from django.db.backends.mysql.validation import DatabaseValidation as MySQLValidation
from django.utils.functional import cached_property

from tandem.db.backends.base import TandemValidationMixin, TandemWrapperMixin, bridgeable
from tandem.db.backends.mysql.driver import MySQLConnection
from tandem.db.backends.mysql.kill import QueryKiller, kill_params

__all__ = ["DatabaseValidation", "DatabaseWrapper", "OnWorkerThreads"]

# Django's mysql_server_data, by the settings that pick the server and session.
_server_data: dict[str, dict[str, Any]] = {}


def _server_key(settings_dict: dict[str, Any]) -> str:
    """What decides a connection's server facts: where it goes, who, which ``OPTIONS``.

    Not ``NAME``: the facts are the server's and the session's, and the test
    runner renames the database after sync code has learned them.
    """
    return repr([settings_dict.get(key) for key in ("HOST", "PORT", "USER", "OPTIONS")])


class DatabaseValidation(TandemValidationMixin, MySQLValidation):
    """Django's MySQL checks (``sql_mode``, field types), plus tandem's."""


if TYPE_CHECKING:
    # To mypy the mixin extends the wrapper it is mixed into (Any here).
    from django.db.backends.base.base import BaseDatabaseWrapper as _WrapperBase
else:
    _WrapperBase = object


class OnWorkerThreads(_WrapperBase):
    """Opens each driver connection on a worker thread of its own.

    Mixed in after ``TandemWrapperMixin`` so the pool's ``connect`` is this
    method and Django's own ``get_new_connection`` runs inside it, on the
    worker: ``MySQLdb.connect`` blocks.
    """

    def get_new_connection(self, conn_params: dict[str, Any]) -> MySQLConnection:
        """Django's connect, on a new worker thread (in the bridge), armed with a killer."""
        open_raw = super().get_new_connection
        killer = QueryKiller(kill_params(conn_params))
        conn = MySQLConnection.open(lambda: killer.arm(open_raw(conn_params)), interrupt=killer)
        conn.killer = killer
        return conn


# bridgeable() makes its base at import time: to mypy, Any.
class DatabaseWrapper(TandemWrapperMixin, OnWorkerThreads, bridgeable(django_mysql.DatabaseWrapper)):  # type: ignore[misc]
    """Django's MySQL ``DatabaseWrapper`` on the event loop."""

    validation_class = DatabaseValidation
    if TYPE_CHECKING:  # Django's attribute, which tandem swaps out while setting up
        queries_log: deque

    def get_connection_params(self) -> dict[str, Any]:
        """Django's parameters for ``MySQLdb.connect``, minus tandem's ``pool`` option."""
        params = super().get_connection_params()
        params.pop("pool", None)
        return params

    def get_new_connection(self, conn_params: dict[str, Any]) -> MySQLConnection:
        """A connection (from the pool for a task); in use until given back."""
        conn = super().get_new_connection(conn_params)
        conn.released_clean = False
        return conn

    def init_connection_state(self) -> None:
        """Django's session set-up, once per driver connection.

        A pooled connection already ran Django's ``SET`` statements (isolation
        level, ``SQL_AUTO_IS_NULL``) when it was opened; running them again
        for every task that borrows it would cost a round trip each time.
        Stock Django's persistent connections skip them the same way.
        Outside a task's pool (sync code, a ``TestCase``'s connection) this
        is Django's method, unchanged.
        """
        conn = self.connection
        if conn.session_ready and self.pooled:
            BaseDatabaseWrapper.init_connection_state(self)  # the once-per-alias version check
            return
        with self._set_up_quietly():
            super().init_connection_state()
        conn.session_ready = True

    @cached_property
    def mysql_server_data(self) -> dict[str, Any]:
        """Django's server facts (version, ``sql_mode``...), probed once per server.

        Django caches them per wrapper, and its thread's wrapper lives as long
        as the thread; tandem makes a wrapper per task, so without a shared
        cache every task's first query would be preceded by a probe, and a
        task would probe where stock Django's wrapper already knew (model
        checks in a ``SimpleTestCase``, which may not connect). Sync code
        probes as Django does and records what it learned; tasks reuse it.
        """
        key = _server_key(self.settings_dict)
        if not self.pooled:
            data = _server_data[key] = super().mysql_server_data
            return data
        data = _server_data.get(key)
        if data is None:
            with self._set_up_quietly():
                data = _server_data[key] = super().mysql_server_data
        return data

    @contextmanager
    def _set_up_quietly(self) -> Iterator[None]:
        """Keep a task's connection set-up queries out of ``connection.queries``.

        Stock Django runs them when a connection opens, before any
        ``CaptureQueriesContext`` or ``assertNumQueries`` block starts
        counting (those connect first); a task connects lazily inside the
        block. They are still logged to ``django.db.backends``.
        """
        if not self.task_owned:
            yield
            return
        log = self.queries_log
        self.queries_log = deque(maxlen=log.maxlen)
        try:
            yield
        finally:
            self.queries_log = log

    # -- pool hooks -----------------------------------------------------------
    @staticmethod
    def connection_is_reusable(conn: MySQLConnection) -> bool:
        """Open, idle, given back outside a transaction, no kill in flight.

        Decided without a round trip: the pool also asks from plain loop
        callbacks, where no I/O may run. Any doubt discards the connection.
        """
        try:
            return conn.is_reusable
        except Exception:  # a closed or broken driver object
            return False

    @staticmethod
    def close_raw_connection(conn: MySQLConnection) -> None:
        """Close without waiting (queued behind a call its worker still runs)."""
        conn.close_now()

    def ping_raw_connection(self, conn: MySQLConnection) -> None:
        """Ask the server to answer (``CONN_HEALTH_CHECKS``); raises if it does not."""
        conn.ping()

    def _give_back(self, conn: MySQLConnection) -> None:
        # Only the wrapper knows whether its last user left a transaction or
        # autocommit off behind; note it for the pool's reuse check.
        conn.released_clean = not self.in_atomic_block and bool(self.autocommit)
        super()._give_back(conn)
