"""Async views of the shop: all ORM access is awaited on the event loop, no threads.

The dashboard starts five queries at once with ``asyncio.gather``. Under tandem
each gathered task checks out its own connection from the pool, so the
queries really run side by side on the server: the page's wall time is about
that of the slowest query, not the sum of all of them.
"""

import asyncio
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import BooleanField, F, QuerySet, Sum
from django.db.models.expressions import RawSQL
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect, JsonResponse
from django.shortcuts import aget_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from shop.models import Event, TicketType
from tandem import aatomic

# Server-side delay added to each dashboard query, in seconds (override with ?delay=).
DEFAULT_DELAY = 0.2
MAX_DELAY = 2.0


@dataclass
class Timed:
    """One query's result and how long it took, as seen by its own task."""

    name: str
    result: Any
    seconds: float


@dataclass
class Stats:
    """Everything the dashboard shows, and how long gathering it took."""

    delay: float
    queries: list[Timed]
    wall_seconds: float

    @property
    def sum_seconds(self) -> float:
        """What the queries would have taken one after the other."""
        return sum(query.seconds for query in self.queries)

    @property
    def speedup(self) -> float:
        """Sum over wall time: about the number of queries when they overlap well."""
        return self.sum_seconds / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def results(self) -> dict[str, Any]:
        """Each query's result by name."""
        return {query.name: query.result for query in self.queries}


# An uncorrelated scalar subquery that sleeps: each database evaluates it once
# per query, not once per row. SQLite has no sleep(): the shop app registers
# one on each connection (see shop.apps).
SLEEP_SQL = {
    "postgresql": "(SELECT true FROM pg_sleep(%s))",
    "mysql": "(SELECT SLEEP(%s) = 0)",
    "sqlite": "(SELECT shop_sleep(%s) = 0)",
}


def slowed(queryset: QuerySet, delay: float) -> QuerySet:
    """``queryset``, made to take ``delay`` seconds longer in the database.

    A stand-in for a heavy report or a busy database.
    """
    if not delay:
        return queryset
    sleep = SLEEP_SQL[connections[queryset.db].vendor]
    return queryset.filter(RawSQL(sleep, (delay,), output_field=BooleanField()))


async def timed(name: str, awaitable: Awaitable) -> Timed:
    """Await ``awaitable`` and measure it; gathered, each runs in its own task."""
    started = time.perf_counter()
    result = await awaitable
    return Timed(name, result, time.perf_counter() - started)


async def as_list(queryset: QuerySet) -> list:
    """Evaluate ``queryset`` with ``async for``: one query, no thread."""
    return [row async for row in queryset]


async def collect_stats(delay: float) -> Stats:
    """Run the dashboard's five queries concurrently and time them."""
    now = timezone.now()
    upcoming = Event.objects.filter(starts_at__gte=now).annotate(
        available=Sum(F("ticket_types__capacity") - F("ticket_types__sold"))
    )
    # select_related: the page shows ticket.event, and a lazy load per row
    # would be a hidden sync query in async code.
    cheapest = TicketType.objects.select_related("event").filter(
        sold__lt=F("capacity"), event__starts_at__gte=now
    )
    best_sellers = Event.objects.annotate(sold=Sum("ticket_types__sold")).order_by("-sold", "pk")
    queries = {
        "event_count": slowed(Event.objects.all(), delay).acount(),
        "ticket_totals": slowed(TicketType.objects.all(), delay).aaggregate(
            total_capacity=Sum("capacity"), total_sold=Sum("sold"), revenue=Sum(F("price") * F("sold"))
        ),
        "next_events": as_list(slowed(upcoming, delay).order_by("starts_at", "pk")[:10]),
        "cheapest_tickets": as_list(slowed(cheapest, delay).order_by("price", "event__starts_at")[:5]),
        "best_seller": slowed(best_sellers, delay).afirst(),
    }
    started = time.perf_counter()
    results = await asyncio.gather(*(timed(name, query) for name, query in queries.items()))
    return Stats(delay=delay, queries=results, wall_seconds=time.perf_counter() - started)


def requested_delay(request: HttpRequest) -> float | None:
    """The ``?delay=`` seconds asked for, clamped to [0, MAX_DELAY]; None if not a number."""
    try:
        delay = float(request.GET.get("delay", DEFAULT_DELAY))
    except ValueError:
        return None
    return None if math.isnan(delay) else min(max(delay, 0.0), MAX_DELAY)


@require_GET
async def dashboard(request: HttpRequest) -> HttpResponse:
    """The shop at a glance, with the timing that shows the queries overlapped."""
    delay = requested_delay(request)
    if delay is None:
        return HttpResponseBadRequest("delay must be a number of seconds")
    return render(request, "shop/dashboard.html", {"stats": await collect_stats(delay)})


@require_GET
async def api_stats(request: HttpRequest) -> JsonResponse:
    """The dashboard's data and timings as JSON."""
    delay = requested_delay(request)
    if delay is None:
        return JsonResponse({"error": "delay must be a number of seconds"}, status=400)
    stats = await collect_stats(delay)
    results = stats.results
    best = results["best_seller"]
    return JsonResponse(
        {
            "timing": {
                "delay_per_query": stats.delay,
                "wall_seconds": round(stats.wall_seconds, 4),
                "sum_seconds": round(stats.sum_seconds, 4),
                "speedup": round(stats.speedup, 2),
                "queries": {query.name: round(query.seconds, 4) for query in stats.queries},
            },
            "event_count": results["event_count"],
            "tickets": results["ticket_totals"],
            "next_events": [
                {
                    "id": e.pk,
                    "name": e.name,
                    "venue": e.venue,
                    "starts_at": e.starts_at,
                    "available": e.available,
                }
                for e in results["next_events"]
            ],
            "cheapest_tickets": [
                {
                    "id": t.pk,
                    "event": t.event.name,
                    "name": t.name,
                    "price": t.price,
                    "available": t.available,
                }
                for t in results["cheapest_tickets"]
            ],
            "best_seller": best and {"id": best.pk, "name": best.name, "sold": best.sold},
        }
    )


async def render_event(request: HttpRequest, pk: int, error: str = "", status: int = 200) -> HttpResponse:
    """The event page: its ticket types and a buy button for each."""
    event = await aget_object_or_404(Event, pk=pk)
    tickets = await as_list(event.ticket_types.all())
    bought = request.GET.get("bought", "")
    bought_ticket = next((t for t in tickets if str(t.pk) == bought), None)
    context = {"event": event, "tickets": tickets, "bought": bought_ticket, "error": error}
    return render(request, "shop/event_detail.html", context, status=status)


@require_GET
async def event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One event and its tickets."""
    return await render_event(request, pk)


@require_POST
async def buy(request: HttpRequest, pk: int) -> HttpResponse:
    """Sell one ticket of the posted ``ticket_type`` of event ``pk``.

    The ticket row is read with SELECT ... FOR UPDATE inside ``aatomic``: two
    buyers of the last ticket queue on the row lock, and the second sees it
    sold. The transaction keeps its pooled connection until the block ends.
    """
    try:
        ticket_id = int(request.POST.get("ticket_type", ""))
    except ValueError:
        return HttpResponseBadRequest("ticket_type must be a ticket type id")
    async with aatomic():
        ticket = await aget_object_or_404(TicketType.objects.select_for_update(), pk=ticket_id, event_id=pk)
        sold_out = ticket.available <= 0
        if not sold_out:
            ticket.sold += 1
            await ticket.asave(update_fields=["sold"])
    # Render outside the block: the row lock is released as soon as possible.
    if sold_out:
        return await render_event(
            request, pk, error=f"Sorry, {ticket.name} tickets are sold out.", status=409
        )
    # Post/Redirect/Get with 303 See Other: reloading the page doesn't buy again.
    response = HttpResponseRedirect(f"{reverse('event-detail', args=[pk])}?bought={ticket.pk}")
    response.status_code = 303
    return response
