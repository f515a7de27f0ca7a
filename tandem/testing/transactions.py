"""Every task joins the ``TestCase`` transaction.

Django's ``TestCase`` (and pytest-django's ``django_db`` marker, which uses
it) wraps each test in a transaction on the test thread's connection. Its
async tests then run on an event loop, where tandem would give every task a
connection of its own: they would not see ``setUpTestData`` or fixture rows,
and their writes would escape the rollback.

So while a ``TestCase`` transaction is open, every task on every loop uses
the test thread's wrapper for tandem aliases, one unit of work at a time.
``TransactionTestCase`` (``transaction=True``) opens no transaction, so tasks
keep their own pooled connections, as in production.

Stock Django runs an async test with ``async_to_sync`` from the test thread,
so every thread-sensitive ``sync_to_async`` call of the test (a sync view or
middleware under ``AsyncClient``, a session save, a sync signal receiver)
runs back in the test thread, on the test's connection. Under tandem the
loop may be the test thread itself, so while a test transaction is shared
those calls run with ``native()`` instead (``tandem.db.routing``): same
connection, same transaction, one at a time, as in stock Django.
"""

from __future__ import annotations

from django.db import connections
from django.test import TestCase

from tandem.db.scope import Shared, is_tandem_alias, test_connections

__all__ = ["enter_atomics", "rollback_atomics"]

_stock_enter_atomics = TestCase._enter_atomics.__func__
_stock_rollback_atomics = TestCase._rollback_atomics.__func__


@classmethod  # type: ignore[misc]  # set on TestCase by tandem.patches
def enter_atomics(cls):
    """``TestCase._enter_atomics``, sharing each tandem alias's test transaction."""
    atomics = _stock_enter_atomics(cls)
    for alias in atomics:
        if is_tandem_alias(alias):
            wrapper = connections[alias]
            wrapper.inc_thread_sharing()  # the loop may run in another thread
            test_connections.setdefault(alias, []).append(Shared(alias, wrapper))
    return atomics


@classmethod  # type: ignore[misc]  # set on TestCase by tandem.patches
def rollback_atomics(cls, atomics):
    """``TestCase._rollback_atomics``, ending the sharing first."""
    for alias in atomics:
        stack = test_connections.get(alias)
        if stack:
            stack.pop().wrapper.dec_thread_sharing()
    _stock_rollback_atomics(cls, atomics)
