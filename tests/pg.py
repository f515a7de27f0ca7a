"""Helpers that look at the PostgreSQL server from the outside."""

import psycopg

from tests.settings import POSTGRES_URL


async def server_state(pid: int) -> str | None:
    """The pg_stat_activity state of backend ``pid``, or None if it is gone."""
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        cur = await conn.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid])
        row = await cur.fetchone()
        return row[0] if row else None


def alive(pids) -> set[int]:
    """The subset of ``pids`` that still have a server backend."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [list(pids)])
        return {pid for (pid,) in rows}


def backend_pid(using: str = "default", sleep: float = 0.0) -> int:
    """Sync ORM-level helper: the server pid of this wrapper's connection."""
    from django.db import connections

    with connections[using].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), pg_sleep(%s)", [sleep])
        return cursor.fetchone()[0]
