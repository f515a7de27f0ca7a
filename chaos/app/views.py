"""Three views under load while their connections are killed.

``read`` runs a query that takes a moment (so kills land on busy
connections) and echoes the request's number through the database, then
counts the ``Pair`` rows; ``write`` writes a request's two ``Pair`` rows in
one transaction with that same slow query between them, so a kill can land
mid-transaction; ``children`` does the same with each row written by a task
of its own, created inside the transaction (the tasks join it).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time

from django.db import connection, connections, transaction
from django.http import JsonResponse

from chaos.app.models import Pair
from tandem import aatomic, native

# SELECT <the parameter>, after sleeping <seconds> on the server
ECHO_AFTER = {
    "postgresql": "SELECT %s::int, pg_sleep(%s)",
    "mysql": "SELECT %s, SLEEP(%s)",
    # No sleep in SQLite: count rows for about that long (``sqlite_rows``).
    "sqlite": "SELECT %s, (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
    "WHERE x < %s) SELECT count(*) FROM c)",
}
# How long each view's slow query takes, seconds.
QUERY_SECONDS = 0.02
# Where each ``stages`` request has got to, by request number: the abandon
# scenario reads it to tell where its disconnect landed.
STAGES: dict[int, str] = {}


def echo(n: int, seconds: float = QUERY_SECONDS, using: str = "default") -> int:
    """Sync: ``n``, sent through the database (alias ``using``) and back after ``seconds``."""
    with connections[using].cursor() as cursor:
        vendor = connections[using].vendor
        wait = sqlite_rows(seconds) if vendor == "sqlite" else seconds
        cursor.execute(ECHO_AFTER[vendor], [n, wait])
        return cursor.fetchone()[0]


def sqlite_rows(seconds: float) -> int:
    """How many rows SQLite's echo counts to take ``seconds`` on this machine.

    Measured, not assumed: the same count ran 8 million rows a second on one
    machine and 3 million on another, and a "20 ms" query that takes 55 ms
    turns the soak's load on SQLite (one writer at a time) into an overload.
    """
    return max(1, round(seconds * _sqlite_rows_per_second()))


@functools.cache
def _sqlite_rows_per_second() -> float:
    rows = 200_000
    probe = sqlite3.connect(":memory:")
    try:
        return rows / min(_timed_count(probe, rows) for _ in range(3))
    finally:
        probe.close()


def _timed_count(probe: sqlite3.Connection, rows: int) -> float:
    started = time.perf_counter()
    probe.execute(ECHO_AFTER["sqlite"].replace("%s", "?"), [0, rows]).fetchall()
    return time.perf_counter() - started


async def read(request, n: int):
    """A query and a count: the answer must be ``n``, and the count even."""
    answer = await native(echo)(n)
    rows = await Pair.objects.acount()
    return JsonResponse({"n": answer, "rows": rows})


async def steady_read(request, n: int):
    """``read`` at a constant cost: the count is of this request's rows (indexed), not all."""
    answer = await native(echo)(n)
    rows = await Pair.objects.filter(request=n).acount()
    return JsonResponse({"n": answer, "rows": rows})


async def write(request, n: int):
    """Two rows in one transaction, a slow query between them."""
    async with aatomic():
        await Pair.objects.acreate(request=n, half=1)
        answer = await native(echo)(n)
        await Pair.objects.acreate(request=n, half=2)
    return JsonResponse({"n": answer})


async def children(request, n: int):
    """``write``, with the two rows written by two child tasks that join the transaction."""

    async def half(which: int) -> int:
        await Pair.objects.acreate(request=n, half=which)
        return await native(echo)(n)

    async with aatomic():
        async with asyncio.TaskGroup() as group:
            answers = [group.create_task(half(1)), group.create_task(half(2))]
    return JsonResponse({"n": answers[0].result()})


async def stages(request, n: int):
    """A connection, a query of ``?query=`` seconds, a transaction around one of ``?tx=``.

    Each stage is written down in ``STAGES`` before it starts, so a request
    abandoned by its client tells where it was: waiting for the pool (or
    connecting), in the query, in the transaction; ``done`` once it
    committed. The transaction writes the request's two ``Pair`` rows.
    """
    query, tx = float(request.GET.get("query", 0)), float(request.GET.get("tx", 0))
    STAGES[n] = "pool"
    await native(connection.ensure_connection)()
    STAGES[n] = "query"
    answer = await native(echo)(n, query)
    STAGES[n] = "transaction"
    async with aatomic():
        await Pair.objects.acreate(request=n, half=1)
        await native(echo)(n, tx)
        await Pair.objects.acreate(request=n, half=2)
    STAGES[n] = "done"
    return JsonResponse({"n": answer})


def _read_and_write(n: int, using: str) -> int:
    answer = echo(n, QUERY_SECONDS, using)
    with transaction.atomic(using=using):
        Pair.objects.using(using).create(request=n, half=1)
        Pair.objects.using(using).create(request=n, half=2)
    return answer


async def on_alias(request, alias: str, n: int):
    """``read`` then ``write``'s transaction, on database alias ``alias``, in one unit of work."""
    return JsonResponse({"n": await native(_read_and_write)(n, alias)})


async def slow(request, alias: str):
    """A query of ``?seconds=`` on ``alias``: longer than its statement timeout, it fails."""
    seconds = float(request.GET["seconds"])
    return JsonResponse({"n": await native(echo)(0, seconds, alias)})


# Scenario 6: what a request may change in its connection's session, by vendor
# (statements, run in order), and one query that reads all of it back.
CHANGES = {
    "postgresql": {
        "search_path": ["SET search_path TO chaos_elsewhere, public"],
        "role": ["SET ROLE chaos_probe"],
        "time_zone": ["SET TIME ZONE 'Pacific/Auckland'"],
        "set_config": ["SELECT set_config('chaos.tenant', '42', false)"],
        "temporary_table": ["CREATE TEMP TABLE chaos_leak (i int)"],
        "advisory_lock": ["SELECT pg_advisory_lock(pg_backend_pid())"],
        "prepared_statement": ["PREPARE chaos_leak AS SELECT 1"],
    },
    "mysql": {
        "user_variable": ["SET @chaos_tenant = 42"],
        "session_variable": ["SET SESSION wait_timeout = 12345"],
        "time_zone": ["SET time_zone = '+05:00'"],
        # MariaDB lists no temporary tables: this one hides a real, empty table.
        "temporary_table": [
            "CREATE TEMPORARY TABLE chaos_shadow (i int)",
            "INSERT INTO chaos_shadow VALUES (1)",
        ],
        "named_lock": ["SELECT GET_LOCK(CONCAT('chaos_', CONNECTION_ID()), 0)"],
    },
    "sqlite": {
        "temporary_table": ["CREATE TEMP TABLE chaos_leak (i int)"],
    },
}
# (The probes must not look like a session change themselves: tandem's test
# is cautious, and would close every connection after its probe.)
PROBES = {
    "postgresql": (
        "SELECT current_setting('search_path') AS search_path, current_user AS role, "
        "current_setting('TimeZone') AS time_zone, "
        "coalesce(current_setting('chaos.tenant', true), '') AS tenant, "
        "(SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema() "
        "AND relname = 'chaos_leak') AS temporary_table, "
        "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks, "
        "(SELECT count(*) FROM pg_prepared_statements) AS prepared_statements"
    ),
    "mysql": (
        "SELECT @chaos_tenant AS tenant, @@SESSION.wait_timeout AS wait_timeout, "
        "@@SESSION.time_zone AS time_zone, "
        "IS_USED_LOCK(CONCAT('chaos_', CONNECTION_ID())) IS NOT NULL AS named_lock, "
        "(SELECT COUNT(*) FROM chaos_shadow) AS shadow_rows"
    ),
    "sqlite": "SELECT count(*) AS temporary_table FROM sqlite_temp_master WHERE name = 'chaos_leak'",
}
SETUP = {
    "postgresql": [
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'chaos_probe') "
        "THEN CREATE ROLE chaos_probe NOLOGIN; END IF; END $$"
    ],
    "mysql": ["CREATE TABLE IF NOT EXISTS chaos_shadow (i int)"],
    "sqlite": [],
}


def session_setup() -> None:
    """Sync: what the changes need (a role to switch to, a table to hide)."""
    with connection.cursor() as cursor:
        for sql in SETUP[connection.vendor]:
            cursor.execute(sql)


def _change_and_probe(kind: str) -> dict:
    with connection.cursor() as cursor:
        for sql in CHANGES[connection.vendor].get(kind, []):
            cursor.execute(sql)
        cursor.execute(PROBES[connection.vendor])
        names = [column[0] for column in cursor.description]
        return {name: str(value) for name, value in zip(names, cursor.fetchone(), strict=True)}


async def session(request, kind: str, n: int):
    """Change the session as ``kind`` says (``probe``: not at all), then read it back."""
    return JsonResponse({"n": n, "probe": await native(_change_and_probe)(kind)})
