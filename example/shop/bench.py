"""The views ``bench/http.py`` loads: the same work in every server it compares.

``/bench/event/<id>``: one event by primary key, as JSON. ``/bench/dashboard``:
the dashboard's three aggregates and one upstream call, concurrently, as
JSON. ``/bench/me/event/<id>``: the logged-in user (a session read and a
user lookup, with ``TANDEM_DEMO_MIDDLEWARE=startproject``), then the event,
as the event's JSON plus ``"user"``; 403 without a logged-in user.
``/bench/page``: a whole HTML page: the logged-in user, one cache read
(the site banner, Redis in the demo), 20 events in a template. Async
views serve tandem and stock Django async; the ``sync_`` twins do the same
one after the other, for Django under a threaded WSGI server (and for
tandem's ``TANDEM_SYNC_VIEWS``).
"""

from __future__ import annotations

import asyncio

from django.core.cache import cache
from django.db.models import Count, Sum, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from shop.models import Event, Order, TicketType
from shop.upstream import fetch_quote, fetch_quote_sync

EVENT_FIELDS = ("id", "name", "venue", "starts_at")
PAGE_ROWS = 20
BANNER_KEY = "bench:banner"
BANNER = {"headline": "Tickets on sale now", "note": "Prices include fees."}


def _event_or_404(found: dict | None, **extra: str) -> JsonResponse:
    if found is None:
        raise Http404("no such event")
    return JsonResponse({**found, "starts_at": found["starts_at"].isoformat(), **extra})


def _not_logged_in() -> JsonResponse:
    return JsonResponse({"detail": "log in first"}, status=403)


def _aggregates() -> tuple:
    zero = Value(0)
    return (
        (Event.objects.all(), {"events": Count("pk")}),
        (
            TicketType.objects.all(),
            {"capacity": Coalesce(Sum("capacity"), zero), "sold": Coalesce(Sum("sold"), zero)},
        ),
        (Order.objects.all(), {"orders": Count("pk"), "tickets_ordered": Coalesce(Sum("quantity"), zero)}),
    )


async def event(request: HttpRequest, pk: int) -> JsonResponse:
    """One event by primary key: one query."""
    return _event_or_404(await Event.objects.filter(pk=pk).values(*EVENT_FIELDS).afirst())


async def me_event(request: HttpRequest, pk: int) -> JsonResponse:
    """``event`` for the logged-in user: the session, the user, then the event."""
    user = await request.auser()
    if not user.is_authenticated:
        return _not_logged_in()
    found = await Event.objects.filter(pk=pk).values(*EVENT_FIELDS).afirst()
    return _event_or_404(found, user=user.username)


async def dashboard(request: HttpRequest) -> JsonResponse:
    """Three aggregates and the upstream call, all four at once."""
    queries = [queryset.aaggregate(**exprs) for queryset, exprs in _aggregates()]
    *counts, upstream = await asyncio.gather(*queries, fetch_quote())
    return JsonResponse({k: v for part in counts for k, v in part.items()} | {"upstream": upstream})


def sync_event(request: HttpRequest, pk: int) -> JsonResponse:
    """``event`` for sync Django."""
    return _event_or_404(Event.objects.filter(pk=pk).values(*EVENT_FIELDS).first())


def sync_me_event(request: HttpRequest, pk: int) -> JsonResponse:
    """``me_event`` for sync Django."""
    user = request.user
    if not user.is_authenticated:
        return _not_logged_in()
    return _event_or_404(Event.objects.filter(pk=pk).values(*EVENT_FIELDS).first(), user=user.username)


def sync_dashboard(request: HttpRequest) -> JsonResponse:
    """``dashboard`` for sync Django: the four one after the other."""
    counts = [queryset.aggregate(**exprs) for queryset, exprs in _aggregates()]
    body = {k: v for part in counts for k, v in part.items()}
    return JsonResponse(body | {"upstream": fetch_quote_sync()})


def _upcoming() -> list:
    return Event.objects.order_by("starts_at", "pk").values(*EVENT_FIELDS)[:PAGE_ROWS]


def _page(request: HttpRequest, user, banner: dict, events: list) -> HttpResponse:
    # The rows are fetched before rendering, so the same render() serves every
    # server: the template does no I/O of its own.
    return render(request, "shop/bench_page.html", {"user": user, "banner": banner, "events": events})


async def page(request: HttpRequest) -> HttpResponse:
    """A page for the logged-in user: one cache read, 20 rows, a template."""
    user = await request.auser()
    if not user.is_authenticated:
        return _not_logged_in()
    banner = await cache.aget(BANNER_KEY)
    if banner is None:
        banner = BANNER
        await cache.aset(BANNER_KEY, banner, 300)
    return _page(request, user, banner, [row async for row in _upcoming()])


def sync_page(request: HttpRequest) -> HttpResponse:
    """``page`` for sync Django."""
    user = request.user
    if not user.is_authenticated:
        return _not_logged_in()
    banner = cache.get(BANNER_KEY)
    if banner is None:
        banner = BANNER
        cache.set(BANNER_KEY, banner, 300)
    return _page(request, user, banner, list(_upcoming()))
