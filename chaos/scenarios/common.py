"""Small helpers the scenarios share."""

from __future__ import annotations

from django.db import connections


def touch(alias: str = "default") -> None:
    """Sync: one trivial query, so the connection has really been used."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def connection_id(alias: str = "default") -> int:
    """Sync: which connection this is (the server's session id; SQLite: the object's)."""
    connection = connections[alias]
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        return id(connection.connection)
    sql = "SELECT pg_backend_pid()" if connection.vendor == "postgresql" else "SELECT CONNECTION_ID()"
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def error_kind(exc: BaseException) -> str:
    """``module.Class: first line of the message``, to group errors by."""
    cls = type(exc)
    lines = str(exc).strip().splitlines()
    return f"{cls.__module__}.{cls.__qualname__}: {lines[0] if lines else ''}"[:160]
