"""The dashboard: three database aggregates and one upstream call, in parallel.

``asyncio.gather`` starts the four at once. Under tandem each gathered task
takes its own pooled connection for its query and gives it back as soon as
the query is done, so the queries overlap on the server and no connection
waits on the upstream service: the page takes about as long as the slowest
of the four, not their sum.

The page then keeps what it collected in Django's cache (Redis, see
settings.CACHES) for ``CACHE_SECONDS``: the next visitors get it from there,
with ``await cache.aget()``, and the database is not asked again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db import connections
from django.db.models import BooleanField, Count, F, QuerySet, Sum, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from shop.models import Event, Order, TicketType
from shop.upstream import fetch_quote
from tandem.shortcuts import arender

MAX_DELAY = 2.0
CACHE_KEY = "dashboard"
CACHE_SECONDS = 30

# An uncorrelated scalar subquery that sleeps: a stand-in for a heavy report
# or a busy database (?delay=). SQLite has no sleep(): shop.apps adds one.
SLEEP_SQL = {
    "postgresql": "(SELECT true FROM pg_sleep(%s))",
    "mysql": "(SELECT SLEEP(%s) = 0)",
    "sqlite": "(SELECT shop_sleep(%s) = 0)",
}


def slowed(queryset: QuerySet, delay: float) -> QuerySet:
    """``queryset``, made to take ``delay`` seconds longer in the database."""
    if not delay:
        return queryset
    sleep = SLEEP_SQL[connections[queryset.db].vendor]
    return queryset.filter(RawSQL(sleep, (delay,), output_field=BooleanField()))


def aggregates(delay: float = 0.0) -> dict[str, Awaitable[dict]]:
    """The dashboard's three database aggregates, one query each (not yet awaited)."""
    zero = Value(0)
    return {
        "events": slowed(Event.objects.all(), delay).aaggregate(events=Count("pk")),
        "tickets": slowed(TicketType.objects.all(), delay).aaggregate(
            total_capacity=Coalesce(Sum("capacity"), zero),
            tickets_sold=Coalesce(Sum("sold"), zero),
            revenue=Sum(F("price") * F("sold")),
        ),
        "orders": slowed(Order.objects.all(), delay).aaggregate(
            orders=Count("pk"), tickets_ordered=Coalesce(Sum("quantity"), zero)
        ),
    }


@dataclass
class Part:
    """One of the four parts: its result and how long its task took."""

    name: str
    result: Any
    seconds: float


async def timed(name: str, awaitable: Awaitable) -> Part:
    """Await ``awaitable`` in its own task and time it."""
    started = time.perf_counter()
    result = await awaitable
    return Part(name, result, time.perf_counter() - started)


async def collect(delay: float = 0.0, latency: float | None = None) -> tuple[dict[str, Part], float]:
    """Run the four parts concurrently: the parts by name, and the wall time."""
    parts = {**aggregates(delay), "upstream": fetch_quote(latency)}
    started = time.perf_counter()
    done = await asyncio.gather(*(timed(name, part) for name, part in parts.items()))
    return {part.name: part for part in done}, time.perf_counter() - started


def seconds_param(request: HttpRequest, name: str, default: float | None) -> float | None:
    """``?name=`` as seconds in [0, MAX_DELAY]; ``default`` if absent; ValueError if not a number."""
    raw = request.GET.get(name)
    if raw is None:
        return default
    value = float(raw)
    if math.isnan(value):
        raise ValueError(name)
    return min(max(value, 0.0), MAX_DELAY)


async def cached_collect() -> tuple[dict, bool]:
    """What ``collect()`` gives (and when it was collected), and whether it came from the cache.

    With tandem's Redis backend, ``aget`` and ``aset`` are awaited on the loop
    like the queries are: no thread per cache call. Visitors who find the
    cache empty at the same moment each collect: harmless for a dashboard.
    """
    snapshot = await cache.aget(CACHE_KEY)
    if snapshot is not None:
        return snapshot, True
    parts, wall = await collect()
    snapshot = {"parts": parts, "wall": wall, "at": timezone.now()}
    await cache.aset(CACHE_KEY, snapshot, CACHE_SECONDS)
    return snapshot, False


@require_GET
async def dashboard(request: HttpRequest) -> HttpResponse:
    """The sale at a glance, with the timing that shows the four parts overlapped.

    Served from the cache for ``CACHE_SECONDS`` after it is collected.
    ``?delay=`` slows each database aggregate by that many seconds and
    ``?latency=`` asks the upstream for that latency, to watch the overlap:
    those experiments are collected every time and never cached.
    """
    try:
        delay = seconds_param(request, "delay", 0.0)
        latency = seconds_param(request, "latency", None)
    except ValueError:
        return HttpResponseBadRequest("delay and latency must be numbers of seconds")
    if delay or latency is not None:
        parts, wall = await collect(delay, latency)
        snapshot, cached = {"parts": parts, "wall": wall, "at": timezone.now()}, None
    else:
        snapshot, cached = await cached_collect()
    parts = snapshot["parts"]
    context = {
        **snapshot,
        "cached": cached,
        "cache_seconds": CACHE_SECONDS,
        "summed": sum(part.seconds for part in parts.values()),
        "revenue_usd": (parts["tickets"].result["revenue"] or 0)
        * Decimal(str(parts["upstream"].result["per_eur"])),
    }
    return await arender(request, "shop/dashboard.html", context)


@require_GET
async def dashboard_json(request: HttpRequest) -> JsonResponse:
    """The dashboard's data and timings as JSON."""
    try:
        delay = seconds_param(request, "delay", 0.0)
        latency = seconds_param(request, "latency", None)
    except ValueError:
        return JsonResponse({"error": "delay and latency must be numbers of seconds"}, status=400)
    parts, wall = await collect(delay, latency)
    body = {name: part.result for name, part in parts.items()}
    body["timing"] = {"wall": round(wall, 4), **{n: round(p.seconds, 4) for n, p in parts.items()}}
    return JsonResponse(body)
