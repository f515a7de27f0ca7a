"""End the server sessions a stopped ``runtests.py`` left on its test databases.

Killing ``runtests.py`` closes its sockets, and a session that was idle
ends with them; but a session in the middle of a statement (the very test
that hung: a lock wait, a long sleep) goes on running on the server until
the statement ends, holding its locks and its test database. After stopping
a run, ``python -m conformance`` ends those: every session on a database
whose name starts with the run's test-database prefix
(``test_tandem_conformance_<django>_<mode>_``, see ``conformance.settings``),
which no other run of that Django and mode may use at the same time anyway.
Nothing else on the server is touched.
"""

from __future__ import annotations


def end(db: str, mode: str) -> int:
    """End the sessions on ``mode``'s test databases on ``db``'s server; how many."""
    from conformance import settings

    entry = settings.database("default", db=db, mode=mode)
    prefix = settings.test_database_prefix(mode)
    if db == "postgresql":
        return _end_postgresql(entry, prefix)
    if db == "mysql":
        return _end_mysql(entry, prefix)
    return 0  # SQLite: in-memory databases die with the process


def _end_postgresql(entry: dict, prefix: str) -> int:
    import psycopg

    params = {"host": entry["HOST"], "port": entry["PORT"], "user": entry["USER"], "dbname": "postgres"}
    if entry["PASSWORD"]:
        params["password"] = entry["PASSWORD"]
    params = {k: v for k, v in params.items() if v}
    with psycopg.connect(**params, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT pid, datname FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND datname IS NOT NULL"
        ).fetchall()
        pids = [pid for pid, name in rows if name.startswith(prefix)]
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return len(pids)


def _end_mysql(entry: dict, prefix: str) -> int:
    import MySQLdb

    conn = MySQLdb.connect(
        host=entry["HOST"] or "127.0.0.1",
        port=int(entry["PORT"] or 3306),
        user=entry["USER"],
        passwd=entry["PASSWORD"],
        connect_timeout=5,
    )
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT id, db FROM information_schema.processlist WHERE id <> CONNECTION_ID()")
        ids = [pid for pid, name in cursor.fetchall() if name and name.startswith(prefix)]
        for pid in ids:
            try:
                cursor.execute(f"KILL {int(pid)}")
            except MySQLdb.OperationalError:  # ended meanwhile
                pass
    finally:
        conn.close()
    return len(ids)
