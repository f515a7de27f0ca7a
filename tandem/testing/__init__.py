"""tandem's hooks into Django's test framework: async tests behave as in stock Django.

Loaded by tests only, never in production: the patch registry
(``tandem.patches``, group ``"testing"``) names these hooks by string and
applies them once ``django.test`` is imported. Each module is one feature:

* ``transactions``: while a ``TestCase`` transaction is open, every task
  joins it (``enter_atomics``, ``rollback_atomics``).
* ``on_commit``: ``async with self.captureOnCommitCallbacks(execute=True)``
  awaits async callbacks (``CapturedOnCommit``).
* ``queries``: ``assertNumQueries`` and ``CaptureQueriesContext`` count the
  queries of every task, not only their wrapper's, and work with
  ``async with`` (``CountedLog`` feeds the open counting blocks).
* ``databases``: tasks' wrappers refuse the databases a test did not
  declare, as the test thread's does.

It may import ``tandem.transaction``, ``tandem.db``, ``tandem.bridge`` and ``tandem.conf``.
"""

from __future__ import annotations

from tandem.testing.databases import add_databases_failures, remove_databases_failures
from tandem.testing.on_commit import CapturedOnCommit, capture_on_commit_callbacks
from tandem.testing.queries import (
    CountedLog,
    capture_aenter,
    capture_aexit,
    capture_enter,
    capture_exit,
    connect,
    create_connection,
    queries_logged,
)
from tandem.testing.transactions import enter_atomics, rollback_atomics

__all__ = [
    "CapturedOnCommit",
    "CountedLog",
    "add_databases_failures",
    "capture_aenter",
    "capture_aexit",
    "capture_enter",
    "capture_exit",
    "capture_on_commit_callbacks",
    "connect",
    "create_connection",
    "enter_atomics",
    "queries_logged",
    "remove_databases_failures",
    "rollback_atomics",
]
