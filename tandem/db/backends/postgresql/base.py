"""``ENGINE = "tandem.db.backends.postgresql"``: Django's backend, bridged.

Everything is Django's PostgreSQL backend (adapters, timezone loaders,
server-side cursors, ``OPTIONS`` such as ``isolation_level``, ``assume_role``,
``server_side_binding``, ``prepare_threshold``). The differences:

* connections are ``BridgedConnection``s, whose waits are awaited inside
  ``tandem.native()`` and block as usual outside it;
* on an event loop connections come from tandem's per-loop pool, configured by
  ``OPTIONS["pool"]``; sync code outside any loop keeps Django's behaviour,
  which with ``OPTIONS["pool"]`` set is Django's psycopg_pool (if installed).
"""

from __future__ import annotations

import importlib.util
import types

import psycopg
from django.db.backends.base.validation import BaseDatabaseValidation
from django.db.backends.postgresql import base as django_postgresql
from psycopg.pq import TransactionStatus

from tandem.db.backends.base import (
    TandemValidationMixin,
    TandemWrapperMixin,
    bridgeable,
)
from tandem.db.backends.postgresql.driver import BridgedConnection

__all__ = ["DatabaseValidation", "DatabaseWrapper"]


class _Driver(types.ModuleType):
    """psycopg as Django sees it, except that ``connect`` makes bridged connections."""

    connect = staticmethod(BridgedConnection.connect)

    def __getattr__(self, name: str):
        return getattr(psycopg, name)


Database = _Driver("psycopg")
_HAVE_PSYCOPG_POOL = importlib.util.find_spec("psycopg_pool") is not None


class DatabaseValidation(TandemValidationMixin, BaseDatabaseValidation):
    """Django's backend checks, plus tandem's."""


# bridgeable() makes its base at import time: to mypy, Any.
class DatabaseWrapper(TandemWrapperMixin, bridgeable(django_postgresql.DatabaseWrapper)):  # type: ignore[misc]
    """Django's PostgreSQL ``DatabaseWrapper`` on the event loop."""

    Database = Database
    validation_class = DatabaseValidation

    @property
    def pool(self):
        """Django's psycopg_pool, for sync code; a task's wrapper uses ``tandem_pool()``.

        Without psycopg_pool installed, sync code connects as if no pool
        were configured (Django would refuse to start): ``OPTIONS["pool"]``
        is a tandem setting too.
        """
        if self.task_owned or not _HAVE_PSYCOPG_POOL:
            return None
        options = self.settings_dict["OPTIONS"].get("pool")
        if not options or self.alias in self._connection_pools:
            return super().pool
        # Django builds its pool from OPTIONS["pool"] on first use: let it
        # build one of bridged connections (they block as usual outside the
        # bridge; a TestCase shares its connection with the test's tasks).
        settings_dict = self.settings_dict
        bridged = {**({} if options is True else options), "connection_class": BridgedConnection}
        self.settings_dict = {**settings_dict, "OPTIONS": {**settings_dict["OPTIONS"], "pool": bridged}}
        try:
            return super().pool
        finally:
            self.settings_dict = settings_dict

    @staticmethod
    def connection_is_reusable(conn: psycopg.Connection) -> bool:
        """Open, not broken, idle and outside a transaction."""
        return not conn.closed and not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE

    def ping_raw_connection(self, conn: psycopg.Connection) -> None:
        """Round-trip an empty query."""
        conn.execute("")
