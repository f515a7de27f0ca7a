"""The onsale demo end to end: pages, buying under a rush, the dashboard."""

from __future__ import annotations

import asyncio
import io
import re
from datetime import timedelta

import httpx
import pytest
from asgiref.sync import sync_to_async
from demo.settings import STARTPROJECT_MIDDLEWARE
from django.core.asgi import get_asgi_application
from django.core.management import call_command
from django.db import connections
from django.test import AsyncClient
from django.utils import timezone
from shop import dashboard
from shop.models import Event, Order, TicketType

pytestmark = pytest.mark.django_db(transaction=True)


async def make_event(capacity: int = 100, sold: int = 0) -> TicketType:
    event = await Event.objects.acreate(
        name="Greenlet Quartet live", venue="Main Hall", starts_at=timezone.now() + timedelta(days=1)
    )
    return await TicketType.objects.acreate(
        event=event, name="Standing", price="25.00", capacity=capacity, sold=sold
    )


async def test_pages_and_buying_one_ticket():
    ticket = await make_event(capacity=10)
    client = AsyncClient()
    listing = await client.get("/")
    assert "Greenlet Quartet live" in listing.text
    page = await client.get(f"/events/{ticket.event_id}/")
    assert page.status_code == 200 and "10 left" in page.text
    assert (await client.get(f"/events/{ticket.event_id}/availability/")).json() == {str(ticket.pk): 10}

    bought = await client.post(
        f"/events/{ticket.event_id}/buy/", {"ticket_type": ticket.pk, "quantity": 2, "email": "a@example.com"}
    )
    assert bought.status_code == 303
    order = await Order.objects.aget()
    assert bought["Location"] == f"/orders/{order.pk}/"
    shown = await client.get(bought["Location"])
    assert "2 \u00d7 Standing" in shown.text and "a@example.com" in shown.text
    await ticket.arefresh_from_db()
    assert ticket.sold == 2


async def test_bad_input_is_refused_and_sells_nothing():
    ticket = await make_event()
    client = AsyncClient()
    for data in (
        {"ticket_type": ticket.pk, "quantity": 1, "email": "not an email"},
        {"ticket_type": ticket.pk, "quantity": 0, "email": "a@example.com"},
        {"ticket_type": 999_999, "quantity": 1, "email": "a@example.com"},
    ):
        response = await client.post(f"/events/{ticket.event_id}/buy/", data)
        assert response.status_code == 400
    assert await Order.objects.acount() == 0


async def test_500_buyers_for_the_last_100_tickets():
    """The rush: 500 concurrent requests through Django's real ASGI handler."""
    ticket = await make_event(capacity=1000, sold=900)
    # httpx straight into the ASGI application, not Django's test client: the
    # test client instruments every template render of every client, which
    # makes 500 concurrent clients quadratic, and it skips the CSRF check.
    transport = httpx.ASGITransport(app=get_asgi_application())
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        page = await client.get(f"/events/{ticket.event_id}/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]

        async def buyer(n: int) -> httpx.Response:
            data = {"ticket_type": ticket.pk, "quantity": 1, "email": f"buyer{n}@example.com"}
            return await client.post(
                f"/events/{ticket.event_id}/buy/", data={**data, "csrfmiddlewaretoken": token}
            )

        responses = await asyncio.gather(*(buyer(n) for n in range(500)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(303) == 100
    assert statuses.count(409) == 400
    assert all("Sold out" in r.text for r in responses if r.status_code == 409)
    await ticket.arefresh_from_db()
    assert ticket.sold == ticket.capacity == 1000  # sold out, not oversold
    assert await Order.objects.acount() == 100
    assert await Order.objects.values("email").distinct().acount() == 100


async def test_dashboard_runs_its_four_parts_at_once(upstream, monkeypatch):
    ticket = await make_event(capacity=50, sold=5)
    await Order.objects.acreate(ticket_type=ticket, email="a@example.com", quantity=3)
    spans = {}
    timed = dashboard.timed

    async def spying(name, awaitable):
        part = await timed(name, awaitable)
        loop = asyncio.get_running_loop()
        spans[name] = (loop.time() - part.seconds, loop.time())
        return part

    monkeypatch.setattr(dashboard, "timed", spying)
    response = await AsyncClient().get("/api/dashboard/?delay=0.2&latency=0.2")
    body = response.json()
    assert body["events"] == {"events": 1}
    assert body["tickets"]["total_capacity"] == 50 and body["tickets"]["tickets_sold"] == 5
    assert body["orders"] == {"orders": 1, "tickets_ordered": 3}
    assert body["upstream"]["latency"] == 0.2
    # Overlap, not a stopwatch: every part started before any part finished.
    assert max(start for start, _ in spans.values()) < min(end for _, end in spans.values())


async def test_bench_views_agree_with_each_other(upstream):
    ticket = await make_event(capacity=7, sold=2)
    client = AsyncClient()
    event = (await client.get(f"/bench/event/{ticket.event_id}")).json()
    assert event["name"] == "Greenlet Quartet live"
    assert (await client.get("/bench/event/999999")).status_code == 404
    native = (await client.get("/bench/dashboard")).json()
    assert native["capacity"] == 7 and native["sold"] == 2 and native["orders"] == 0
    try:
        # A sync view: Django runs it in its sync_to_async thread, on that thread's connection.
        assert (await client.get("/bench/sync/dashboard")).json() == native
    finally:
        await sync_to_async(connections.close_all)()  # that thread's, or it outlives the test database


async def test_bench_me_views_see_the_logged_in_user(settings):
    settings.MIDDLEWARE = STARTPROJECT_MIDDLEWARE  # TANDEM_DEMO_MIDDLEWARE=startproject
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, for a test
    ticket = await make_event()
    out = io.StringIO()
    await sync_to_async(call_command)("bench_session", stdout=out)
    client = AsyncClient()
    assert (await client.get(f"/bench/me/event/{ticket.event_id}")).status_code == 403
    client.cookies[settings.SESSION_COOKIE_NAME] = out.getvalue().strip()
    me = (await client.get(f"/bench/me/event/{ticket.event_id}")).json()
    assert me["user"] == "bench" and me["name"] == "Greenlet Quartet live"
    try:
        assert (await client.get(f"/bench/sync/me/event/{ticket.event_id}")).json() == me
    finally:
        await sync_to_async(connections.close_all)()  # the sync view's thread's connection
