"""The bench views on django-async-backend: every query is awaited on a real async connection.

A task owns one connection per alias, and the package refuses to share it with other tasks (an
``asyncio.gather`` of ORM calls on it raises ``RuntimeError``). The dashboard therefore wraps each
aggregate in ``async_new_connection``, the package's way to run queries in parallel: each gathered
task checks out its own pooled connection and returns it when its query is done, so none is held
while the upstream is awaited. The event view uses the request's own connection, which goes back to
the pool when the request finishes.

``settings.BENCH_QUERY_API`` picks the package's async ORM (``orm``, the same querysets as the tandem
demo's ``example/shop/bench.py``) or its async cursor with literal SQL (``cursor``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Count, Sum, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, JsonResponse
from django_async_backend.db import async_connections, async_new_connection

from bench.http_apps._contract import Upstream

from .models import Event, Order, TicketType

EVENT_FIELDS = ("id", "name", "venue", "starts_at")
EVENT_SQL = "SELECT id, name, venue, starts_at FROM shop_event WHERE id = %s"
TOTALS_SQL = (
    ("SELECT count(*) FROM shop_event", ("events",)),
    (
        "SELECT coalesce(sum(capacity), 0), coalesce(sum(sold), 0) FROM shop_tickettype",
        ("capacity", "sold"),
    ),
    ("SELECT count(*), coalesce(sum(quantity), 0) FROM shop_order", ("orders", "tickets_ordered")),
)

# Made on first use: Django's ASGI handler has no lifespan to make or close it in.
upstream = Upstream()


async def fetch_row(sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
    """One row of ``sql`` through the async cursor of this task's connection."""
    connection = async_connections[DEFAULT_DB_ALIAS]
    async with await connection.cursor() as cursor:
        await cursor.execute(sql, params)
        return await cursor.fetchone()


async def sql_totals(sql: str, names: Sequence[str]) -> dict[str, Any]:
    row = await fetch_row(sql)
    assert row is not None  # an aggregate without GROUP BY always returns one row
    return dict(zip(names, row, strict=True))


def orm_totals() -> list[Awaitable[dict[str, Any]]]:
    zero = Value(0)
    return [
        Event.async_objects.aaggregate(events=Count("pk")),
        TicketType.async_objects.aaggregate(
            capacity=Coalesce(Sum("capacity"), zero), sold=Coalesce(Sum("sold"), zero)
        ),
        Order.async_objects.aaggregate(orders=Count("pk"), tickets_ordered=Coalesce(Sum("quantity"), zero)),
    ]


async def find_event(pk: int) -> dict[str, Any] | None:
    if settings.BENCH_QUERY_API == "orm":
        return await Event.async_objects.filter(pk=pk).values(*EVENT_FIELDS).afirst()
    row = await fetch_row(EVENT_SQL, (pk,))
    return None if row is None else dict(zip(EVENT_FIELDS, row, strict=True))


async def event(request: HttpRequest, pk: int) -> JsonResponse:
    """One event by primary key: one query."""
    found = await find_event(pk)
    if found is None:
        raise Http404("no such event")
    return JsonResponse({**found, "starts_at": found["starts_at"].isoformat()})


async def dashboard(request: HttpRequest) -> JsonResponse:
    """Three aggregates, each on its own connection, and the upstream call, all four at once."""
    if settings.BENCH_QUERY_API == "orm":
        totals = orm_totals()
    else:
        totals = [sql_totals(sql, names) for sql, names in TOTALS_SQL]
    *parts, quote = await asyncio.gather(*(async_new_connection(total) for total in totals), upstream.fetch())
    body = {key: value for part in parts for key, value in part.items()}
    return JsonResponse(body | {"upstream": quote})
