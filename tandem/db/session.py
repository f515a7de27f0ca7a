"""Which statements may leave state on a connection that outlives them.

A pooled connection serves many tasks, one after another. Most of what a
task does ends with its statement or its transaction, but some statements
change the *session*: ``SET search_path``, ``SET ROLE``, ``SET TIME ZONE``,
``set_config()``, a temporary table, a session advisory lock, a ``PREPARE``d
statement, a MariaDB user variable. Handed to the next task, such a
connection would run that task's queries as another tenant, role or time
zone: a security hole, not a detail.

tandem watches the statements that go through Django's cursors (the ORM's,
``connection.cursor()``'s) and marks the wrapper as soon as one *may* change
the session. A marked connection stays with its task until the task ends,
so the task sees its own settings across awaits as it would with Django's
one connection per request, and is then closed instead of going back to the
pool: the next task gets a connection in the state Django's ``connect()``
left it. What runs while connecting (``init_connection_state()``, the
``connection_created`` signal) is the connection's baseline, not a change.

The test errs on the side of caution: a statement is harmless only if its
first word is one the ORM uses for data and transactions, and it names none
of the functions that change a session from inside a query. A false alarm
costs one reconnection; a miss would leak state. Statements run on the
driver connection directly (``connection.connection.cursor()``) are not
seen: they are outside Django's, and tandem's, bookkeeping.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

__all__ = ["may_change_session", "watching"]

# First words of statements that only touch data or the current transaction.
# SET CONSTRAINTS and SET LOCAL end with the transaction: harmless too.
_HARMLESS = re.compile(
    r"\s*(?:SELECT|INSERT|UPDATE|DELETE|WITH|VALUES|TABLE|SAVEPOINT|RELEASE|ROLLBACK|COMMIT|BEGIN"
    r"|START\s+TRANSACTION|EXPLAIN|SHOW|TRUNCATE|COPY|ANALYZE|VACUUM|DECLARE|FETCH|MOVE|CLOSE"
    r"|REPLACE|LOCK\s+TABLE|SET\s+CONSTRAINTS|SET\s+LOCAL|SET\s+TRANSACTION"
    r"|(?:CREATE|ALTER|DROP|COMMENT|GRANT|REVOKE)\s+(?!TEMP|TEMPORARY|LOCAL|GLOBAL\s+TEMP))\b",
    re.IGNORECASE,
)
# Session changes made from inside a query: set_config(), session advisory
# locks (the _xact_ variants end with the transaction), MariaDB's GET_LOCK()
# and := assignments to user variables, PostgreSQL's temporary schema.
# (Substring tests on the lowercased text: a regex alternation with
# IGNORECASE costs ~5 µs a statement, these ~0.4 µs.)
_SESSION_FUNCTIONS = ("set_config", "advisory_lock", "get_lock", ":=", "pg_temp")

# Verdicts by SQL text: the ORM sends the same few texts over and over, and a
# lookup costs a hash of the string. Bounded: cleared when full.
_verdicts: dict[str, bool] = {}
_MAX_VERDICTS = 2048


def may_change_session(sql: str) -> bool:
    """Whether ``sql`` may leave state on its connection beyond its transaction."""
    verdict = _verdicts.get(sql)
    if verdict is None:
        if len(_verdicts) >= _MAX_VERDICTS:
            _verdicts.clear()
        verdict = _verdicts[sql] = _judge(sql)
    return verdict


def _judge(sql: str) -> bool:
    if not _HARMLESS.match(sql):
        return True
    lowered = sql.lower()
    return any(name in lowered for name in _SESSION_FUNCTIONS)


if TYPE_CHECKING:
    # To mypy _Watching extends the cursor wrapper it is mixed into (Django's,
    # Any here), so its super() calls check; at run time it extends object.
    from django.db.backends.utils import CursorWrapper as _CursorWrapperBase
else:
    _CursorWrapperBase = object


class _Watching(_CursorWrapperBase):
    """Mark the wrapper (``db.session_changed``) before a statement that may change the session."""

    db: Any

    def execute(self, sql: Any, params: Any = None) -> Any:
        if not self.db.session_changed and isinstance(sql, str) and may_change_session(sql):
            self.db.session_changed = True
        return super().execute(sql, params)

    def executemany(self, sql: Any, param_list: Any) -> Any:
        if not self.db.session_changed and isinstance(sql, str) and may_change_session(sql):
            self.db.session_changed = True
        return super().executemany(sql, param_list)

    def callproc(self, procname: str, params: Any = None, kparams: Any = None) -> Any:
        self.db.session_changed = True  # a procedure may do anything
        return super().callproc(procname, params, kparams)


@functools.cache
def watching(wrapper_class: type) -> type:
    """``wrapper_class`` (Django's cursor wrapper of a backend), watching for session changes.

    A subclass of the backend's own wrapper, so what a backend adds to it
    (PostgreSQL's debug wrapper logs ``copy()``) is kept.
    """
    name = f"SessionWatching{wrapper_class.__name__}"
    return type(name, (_Watching, wrapper_class), {"__module__": __name__})
