"""``ENGINE = "tandem.db.backends.postgresql"``: Django's backend, bridged.

Everything is Django's PostgreSQL backend (adapters, timezone loaders,
server-side cursors, ``OPTIONS`` such as ``isolation_level``, ``assume_role``,
``server_side_binding``, ``prepare_threshold``). The differences:

* connections are ``BridgedConnection``s, whose waits are awaited inside
  ``tandem.native()`` and block as usual outside it;
* on an event loop connections come from tandem's per-loop pool, configured by
  ``OPTIONS["pool"]``; Django's own thread-based psycopg_pool is never used.
"""

from __future__ import annotations

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


class _Driver(types.ModuleType):
    """psycopg as Django sees it, except that ``connect`` makes bridged connections."""

    connect = staticmethod(BridgedConnection.connect)

    def __getattr__(self, name: str):
        return getattr(psycopg, name)


Database = _Driver("psycopg")


class DatabaseValidation(TandemValidationMixin, BaseDatabaseValidation):
    """Django's backend checks, plus tandem's."""


class DatabaseWrapper(TandemWrapperMixin, bridgeable(django_postgresql.DatabaseWrapper)):
    """Django's PostgreSQL ``DatabaseWrapper`` on the event loop."""

    Database = Database
    validation_class = DatabaseValidation

    @property
    def pool(self):
        """Django's thread pool: never; see ``tandem_pool()``."""
        return None

    @staticmethod
    def connection_is_reusable(conn: psycopg.Connection) -> bool:
        """Open, not broken, idle and outside a transaction."""
        return not conn.closed and not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE

    def ping_raw_connection(self, conn: psycopg.Connection) -> None:
        """Round-trip an empty query."""
        conn.execute("")
