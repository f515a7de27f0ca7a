"""Vendor-neutral helpers for tests that look at connections and the server.

Each database answers "which connection is this?" and "sleep N seconds" its
own way; tests call these helpers and run on PostgreSQL, SQLite and MySQL.
"""

from __future__ import annotations

import itertools
import time
import weakref

from django.db import connections
from django.db.backends.signals import connection_created

from tests.settings import POSTGRES_URL, TEST_DB

# SELECT <connection id>, <sleep %s seconds>
_PID_AND_SLEEP = {
    "postgresql": "SELECT pg_backend_pid(), pg_sleep(%s)",
    "mysql": "SELECT CONNECTION_ID(), SLEEP(%s)",
    "sqlite": "SELECT tandem_connection_id(), tandem_sleep(%s)",
}
_ids = itertools.count(1)


_id_of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _sqlite_functions(sender, connection, **kwargs):
    # SQLite has no server process id and no sleep(): give each connection both.
    # The id belongs to the physical connection, which a pool hands out again.
    if connection.vendor == "sqlite":
        handle = connection.connection  # tandem's ThreadedConnection; stock: the raw one
        raw = getattr(handle, "raw", handle)
        try:
            ident = _id_of.setdefault(handle, next(_ids))
        except TypeError:  # sqlite3.Connection takes no weak references: stock backend
            ident = next(_ids)
        raw.create_function("tandem_connection_id", 0, lambda: ident)
        raw.create_function("tandem_sleep", 1, lambda seconds: time.sleep(seconds) or 0)


connection_created.connect(_sqlite_functions)


def backend_pid(using: str = "default", sleep: float = 0.0) -> int:
    """Sync: the id of this wrapper's connection, after sleeping on the server."""
    with connections[using].cursor() as cursor:
        cursor.execute(_PID_AND_SLEEP[connections[using].vendor], [sleep])
        return cursor.fetchone()[0]


# A query that runs for seconds and that the database can stop midway: a
# Python sleep function would not notice SQLite's interrupt().
_LONG_QUERY = {
    "postgresql": "SELECT pg_sleep(5)",
    "mysql": "SELECT SLEEP(5)",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c",
}


def long_query(using: str = "default") -> None:
    """Sync: run a query that takes seconds, unless cancelled."""
    with connections[using].cursor() as cursor:
        cursor.execute(_LONG_QUERY[connections[using].vendor])
        cursor.fetchall()


def has_server() -> bool:
    """True for client/server databases (not SQLite)."""
    return TEST_DB != "sqlite"


def _admin_query(sql: str, params: list):
    """Run ``sql`` on a fresh admin connection (outside tandem) and return the rows."""
    if TEST_DB == "postgresql":
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()
    import MySQLdb

    from tests.settings import DATABASES

    db = DATABASES["default"]
    conn = MySQLdb.connect(host=db["HOST"], port=int(db["PORT"]), user=db["USER"], passwd=db["PASSWORD"])
    try:
        cursor = conn.cursor()
        cursor.execute(sql, params)
        return cursor.fetchall()
    finally:
        conn.close()


def alive(pids) -> set[int]:
    """The subset of server connection ``pids`` that still exist."""
    pids = list(pids)
    if TEST_DB == "postgresql":
        rows = _admin_query("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])
    else:
        marks = ", ".join(["%s"] * len(pids))
        rows = _admin_query(f"SELECT ID FROM information_schema.PROCESSLIST WHERE ID IN ({marks})", pids)
    return {row[0] for row in rows}


def running_query(pid: int) -> bool:
    """True if server connection ``pid`` is executing a statement right now."""
    if TEST_DB == "postgresql":
        rows = _admin_query("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid])
        return bool(rows) and rows[0][0] == "active"
    rows = _admin_query("SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = %s", [pid])
    return bool(rows) and rows[0][0] == "Query"


def terminate(pid: int) -> None:
    """Kill server connection ``pid`` from outside."""
    if TEST_DB == "postgresql":
        _admin_query("SELECT pg_terminate_backend(%s)", [pid])
    else:
        _admin_query(f"KILL {int(pid)}", [])
