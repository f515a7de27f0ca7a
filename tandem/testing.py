"""Async tests see their test's transaction.

Django's ``TestCase`` (and pytest-django's ``django_db`` marker, which uses
it) wraps each test in a transaction on the test thread's connection. Its
async tests then run on an event loop, where tandem would give every task a
connection of its own: they would not see ``setUpTestData`` or fixture rows,
and their writes would escape the rollback.

So while a ``TestCase`` transaction is open, every task on every loop uses
the test thread's wrapper for tandem aliases, one unit of work at a time.
``TransactionTestCase`` (``transaction=True``) opens no transaction, so tasks
keep their own pooled connections, as in production.
"""

from __future__ import annotations

from django.db import connections
from django.test import TestCase

from tandem.scope import Shared, is_tandem_alias, test_connections

_stock_enter_atomics = TestCase._enter_atomics.__func__
_stock_rollback_atomics = TestCase._rollback_atomics.__func__


def _enter_atomics(cls):
    atomics = _stock_enter_atomics(cls)
    for alias in atomics:
        if is_tandem_alias(alias):
            wrapper = connections[alias]
            wrapper.inc_thread_sharing()  # the loop may run in another thread
            test_connections.setdefault(alias, []).append(Shared(alias, wrapper))
    return atomics


def _rollback_atomics(cls, atomics):
    for alias in atomics:
        stack = test_connections.get(alias)
        if stack:
            stack.pop().wrapper.dec_thread_sharing()
    _stock_rollback_atomics(cls, atomics)


def install() -> None:
    """Hook ``TestCase``'s transaction entry and exit."""
    TestCase._enter_atomics = classmethod(_enter_atomics)
    TestCase._rollback_atomics = classmethod(_rollback_atomics)
