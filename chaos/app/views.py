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

from django.db import connection
from django.http import JsonResponse

from chaos.app.models import Pair
from tandem import aatomic, native

# SELECT <the parameter>, after sleeping <seconds> on the server
ECHO_AFTER = {
    "postgresql": "SELECT %s::int, pg_sleep(%s)",
    "mysql": "SELECT %s, SLEEP(%s)",
    "sqlite": "SELECT %s, %s",  # no server to kill: the kill scenario does not run on SQLite
}
# How long each view's slow query takes, seconds.
QUERY_SECONDS = 0.02


def echo(n: int) -> int:
    """Sync: ``n``, sent through the database and back."""
    with connection.cursor() as cursor:
        cursor.execute(ECHO_AFTER[connection.vendor], [n, QUERY_SECONDS])
        return cursor.fetchone()[0]


async def read(request, n: int):
    """A query and a count: the answer must be ``n``, and the count even."""
    answer = await native(echo)(n)
    rows = await Pair.objects.acount()
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
