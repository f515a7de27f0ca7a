"""The database server as the runner sees it, from outside tandem.

Creates the runner's database, lists the sessions tandem's pools hold on it,
and kills them. PostgreSQL is reached with psycopg's own ``AsyncConnection``
(never through tandem), MariaDB/MySQL with mysqlclient in a thread: the
runner's own queries never go through the code under test, and never block
the loop the scenario runs on.

``pgbouncer`` (scenario 7) is PostgreSQL behind the runner's PgBouncer: the
admin connection goes to PostgreSQL directly, where the sessions on the
runner's database are PgBouncer's server connections (the ones the killer
ends); tandem's own connections are PgBouncer's clients, which its admin
console shows (``Admin.behind_pgbouncer``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chaos.pgbouncer import Client, Console

ADMIN_APPLICATION_NAME = "tandem-chaos-admin"
POSTGRES = ("postgresql", "pgbouncer")  # the databases whose server is PostgreSQL


@dataclass(frozen=True)
class Session:
    """One server session of the runner's database."""

    id: int
    state: str  # PostgreSQL: pg_stat_activity.state; MySQL: PROCESSLIST.COMMAND
    in_transaction: bool

    @property
    def busy(self) -> bool:
        """Running a statement or inside a transaction right now."""
        return self.in_transaction or self.state.lower() not in ("idle", "sleep")


@dataclass(frozen=True)
class BehindPgBouncer:
    """The runner's database as PgBouncer and the server behind it hold it."""

    clients: list[Client]  # PgBouncer's client connections: tandem's connections
    servers: list[Session]  # the server's sessions: PgBouncer's server connections
    pool: dict[str, Any]  # PgBouncer's SHOW POOLS row (cl_waiting, sv_active, sv_idle...)


def _admin_params(vendor: str) -> dict[str, Any]:
    db = settings.ADMIN  # the server itself, never PgBouncer
    if vendor in POSTGRES:
        return {
            "host": db["HOST"],
            "port": int(db["PORT"] or 5432),
            "user": db["USER"],
            "password": db["PASSWORD"],
            "dbname": "postgres",
            "application_name": ADMIN_APPLICATION_NAME,
            "autocommit": True,
        }
    return {"host": db["HOST"], "port": int(db["PORT"] or 3306), "user": db["USER"], "passwd": db["PASSWORD"]}


def create_database(vendor: str) -> None:
    """Sync: create the runner's database on the server if it does not exist."""
    name = settings.NAME
    if vendor in POSTGRES:
        import psycopg

        with psycopg.connect(**_admin_params(vendor)) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                conn.execute(f'CREATE DATABASE "{name}"')
    elif vendor == "mysql":
        import MySQLdb

        conn = MySQLdb.connect(**_admin_params(vendor))
        try:
            conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()
    else:
        settings.SQLITE_DIR.mkdir(parents=True, exist_ok=True)


def server_version(vendor: str) -> str:
    """Sync: the server's version string ("" for SQLite: the library's)."""
    if vendor in POSTGRES:
        import psycopg

        with psycopg.connect(**_admin_params(vendor)) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    if vendor == "mysql":
        import MySQLdb

        conn = MySQLdb.connect(**_admin_params(vendor))
        try:
            return conn.get_server_info()
        finally:
            conn.close()
    import sqlite3

    return sqlite3.sqlite_version


class Admin:
    """An admin connection for one scenario's loop (``async with Admin(vendor)``)."""

    def __init__(self, vendor: str) -> None:
        self.vendor = vendor
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._console: Console | None = None

    async def __aenter__(self) -> Admin:
        if self.vendor in POSTGRES:
            import psycopg

            self._conn = await psycopg.AsyncConnection.connect(**_admin_params(self.vendor))
            if self.vendor == "pgbouncer":
                self._console = await Console.connect(settings.PGBOUNCER_CONSOLE, settings.NAME)
        elif self.vendor == "mysql":
            import MySQLdb

            self._conn = await asyncio.to_thread(MySQLdb.connect, **_admin_params(self.vendor))
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._console is not None:
            await self._console.close()
        if self.vendor in POSTGRES:
            await self._conn.close()
        elif self.vendor == "mysql":
            await asyncio.to_thread(self._conn.close)

    async def _mysql(self, sql: str, params: Any = None) -> list[tuple]:
        def run() -> list[tuple]:
            cursor = self._conn.cursor()
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            finally:
                cursor.close()

        async with self._lock:  # one statement at a time on the admin connection
            return await asyncio.to_thread(run)

    async def sessions(self) -> list[Session]:
        """The sessions tandem's pools hold on the runner's database (behind PgBouncer: PgBouncer's)."""
        if self.vendor == "pgbouncer":
            # Every session on this database is one of PgBouncer's server
            # connections; their application_name is whichever client last used them.
            cursor = await self._conn.execute(
                "SELECT pid, coalesce(state, ''), coalesce(state, '') LIKE 'idle in transaction%%' "
                "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                [settings.NAME],
            )
            return [Session(*row) for row in await cursor.fetchall()]
        if self.vendor == "postgresql":
            cursor = await self._conn.execute(
                "SELECT pid, coalesce(state, ''), coalesce(state, '') LIKE 'idle in transaction%%' "
                "FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = %s AND pid <> pg_backend_pid()",
                [settings.NAME, settings.APPLICATION_NAME],
            )
            return [Session(*row) for row in await cursor.fetchall()]
        if self.vendor == "mysql":
            rows = await self._mysql(
                "SELECT p.ID, p.COMMAND, t.trx_id IS NOT NULL FROM information_schema.PROCESSLIST p "
                "LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
                "WHERE p.DB = %s AND p.ID <> CONNECTION_ID()",
                [settings.NAME],
            )
            return [Session(int(i), state, bool(tx)) for i, state, tx in rows]
        return []

    async def kill(self, session_id: int) -> bool:
        """End session ``session_id`` from outside; True if the server did."""
        if self.vendor in POSTGRES:
            cursor = await self._conn.execute("SELECT pg_terminate_backend(%s)", [session_id])
            return bool((await cursor.fetchone())[0])
        import MySQLdb

        try:
            await self._mysql(f"KILL {int(session_id)}")
        except MySQLdb.OperationalError:  # 1094: unknown thread id (it ended meanwhile)
            return False
        return True

    async def behind_pgbouncer(self) -> BehindPgBouncer:
        """``pgbouncer`` only: PgBouncer's clients and pool, and the server's sessions."""
        assert self._console is not None, "only the pgbouncer database has PgBouncer"
        clients, pool = await self._console.clients(), await self._console.pool()
        return BehindPgBouncer(clients, await self.sessions(), pool)

    async def running_queries(self) -> list[str]:
        """The text of every statement tandem's sessions are running right now."""
        if self.vendor == "postgresql":
            cursor = await self._conn.execute(
                "SELECT query FROM pg_stat_activity WHERE datname = %s AND application_name = %s "
                "AND state = 'active' AND pid <> pg_backend_pid()",
                [settings.NAME, settings.APPLICATION_NAME],
            )
            return [row[0] for row in await cursor.fetchall()]
        if self.vendor == "mysql":
            rows = await self._mysql(
                "SELECT INFO FROM information_schema.PROCESSLIST "
                "WHERE DB = %s AND COMMAND = 'Query' AND ID <> CONNECTION_ID()",
                [settings.NAME],
            )
            return [row[0] or "" for row in rows]
        return []
