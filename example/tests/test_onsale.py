"""The onsale demo end to end: logging in, pages, buying under a rush, the dashboard, email."""

from __future__ import annotations

import asyncio
import io
import json
import re
import uuid
from datetime import timedelta

import httpx
import pytest
from asgiref.sync import sync_to_async
from demo.settings import REDIS_CACHE, STARTPROJECT_MIDDLEWARE
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.asgi import get_asgi_application
from django.core.cache import caches
from django.core.management import call_command
from django.db import connections
from django.test import AsyncClient
from django.utils import timezone
from shop import dashboard
from shop.management.commands.seed import DEMO_PASSWORD, DEMO_USERNAME
from shop.models import Event, Order, TicketType

from tests.conftest import require_service

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "tickets, please"


async def make_event(capacity: int = 100, sold: int = 0) -> TicketType:
    event = await Event.objects.acreate(
        name="Greenlet Quartet live", venue="Main Hall", starts_at=timezone.now() + timedelta(days=1)
    )
    return await TicketType.objects.acreate(
        event=event, name="Standing", price="25.00", capacity=capacity, sold=sold
    )


async def make_user(username: str = "fan"):
    return await get_user_model().objects.acreate_user(username, f"{username}@example.com", PASSWORD)


@pytest.fixture
async def buyer() -> AsyncClient:
    """A test client logged in as user ``fan`` (``fan@example.com``)."""
    client = AsyncClient()
    await client.aforce_login(await make_user())
    return client


async def test_logging_in_and_out():
    client = AsyncClient()
    try:
        await sync_to_async(call_command)("seed", events=1, stdout=io.StringIO())
    finally:
        await sync_to_async(connections.close_all)()  # the command's thread's connection
    assert (await client.get("/mail/"))["Location"] == "/login/?next=/mail/"
    page = await client.get("/login/?next=/mail/")
    assert 'name="next" value="/mail/"' in page.text

    wrong = await client.post("/login/", {"username": DEMO_USERNAME, "password": "nope", "next": "/mail/"})
    assert wrong.status_code == 200 and "Please enter a correct username and password" in wrong.text
    logged_in = await client.post(
        "/login/", {"username": DEMO_USERNAME, "password": DEMO_PASSWORD, "next": "/mail/"}
    )
    assert logged_in.status_code == 302 and logged_in["Location"] == "/mail/"
    mailbox = await client.get("/mail/")
    assert mailbox.status_code == 200 and '<strong id="user">demo</strong>' in mailbox.text

    assert (await client.post("/logout/"))["Location"] == "/"
    assert (await client.get("/mail/")).status_code == 302
    assert "Log in" in (await client.get("/")).text


async def test_logging_in_never_redirects_off_the_site():
    await make_user()
    client = AsyncClient()
    data = {"username": "fan", "password": PASSWORD, "next": "https://elsewhere.example/"}
    assert (await client.post("/login/", data))["Location"] == "/"


async def test_pages_and_buying_one_ticket(buyer, mailoutbox):
    ticket = await make_event(capacity=10)
    listing = await buyer.get("/")
    assert "Greenlet Quartet live" in listing.text
    page = await buyer.get(f"/events/{ticket.event_id}/")
    assert page.status_code == 200 and "10 left" in page.text
    assert (await buyer.get(f"/events/{ticket.event_id}/availability/")).json() == {str(ticket.pk): 10}
    assert (await buyer.get(f"/events/{ticket.event_id + 1000}/availability/")).status_code == 404

    bought = await buyer.post(f"/events/{ticket.event_id}/buy/", {"ticket_type": ticket.pk, "quantity": 2})
    assert bought.status_code == 303
    order = await Order.objects.aget()
    assert bought["Location"] == f"/orders/{order.pk}/"
    shown = await buyer.get(bought["Location"])
    assert "2 \u00d7 Standing" in shown.text and "fan@example.com" in shown.text
    await ticket.arefresh_from_db()
    assert ticket.sold == 2
    [email] = mailoutbox
    assert email.to == ["fan@example.com"] and email.subject == f"Your onsale order {order.pk}"

    # An order is its buyer's: anyone else gets a 404.
    other = AsyncClient()
    await other.aforce_login(await make_user("other"))
    assert (await other.get(bought["Location"])).status_code == 404


async def test_the_order_form_re_renders_with_its_errors(buyer):
    ticket = await make_event()
    elsewhere = await make_event()
    for data, error in (
        ({"ticket_type": ticket.pk, "quantity": 0}, "greater than or equal to 1"),
        ({"ticket_type": ticket.pk, "quantity": 11}, "less than or equal to 10"),
        ({"ticket_type": ticket.pk}, "This field is required"),
        ({"ticket_type": 999_999, "quantity": 1}, "Select a valid choice"),
        # Another event's ticket type is not a choice on this event's form.
        ({"ticket_type": elsewhere.pk, "quantity": 1}, "Select a valid choice"),
    ):
        response = await buyer.post(f"/events/{ticket.event_id}/buy/", data)
        assert response.status_code == 400
        assert 'id="buy"' in response.text and error in response.text, data
    assert await Order.objects.acount() == 0


async def test_buying_needs_a_login():
    ticket = await make_event()
    response = await AsyncClient().post(f"/events/{ticket.event_id}/buy/", {"ticket_type": ticket.pk})
    assert response["Location"] == f"/login/?next=/events/{ticket.event_id}/"
    page = await AsyncClient().get(f"/events/{ticket.event_id}/")
    assert "Log in to buy" in page.text and 'id="buy"' not in page.text
    assert await Order.objects.acount() == 0


async def test_the_confirmation_is_delivered_to_the_sink(buyer, mailsink):
    ticket = await make_event(capacity=10)
    bought = await buyer.post(f"/events/{ticket.event_id}/buy/", {"ticket_type": ticket.pk, "quantity": 3})
    assert bought.status_code == 303
    order = await Order.objects.aget()
    await ticket.arefresh_from_db()
    assert ticket.sold == 3 and order.quantity == 3 and order.email == "fan@example.com"

    # What the SMTP sink on loopback received: the message, before the redirect.
    [message] = [json.loads(line) for line in mailsink.read_text().splitlines()]
    assert message["rcpt_tos"] == ["fan@example.com"]
    assert message["from"] == "onsale <tickets@onsale.example>"
    assert message["subject"] == f"Your onsale order {order.pk}"
    assert "3 x Standing for Greenlet Quartet live" in message["body"]
    # And the mailbox page shows it.
    mailbox = await buyer.get("/mail/")
    assert f"Your onsale order {order.pk}" in mailbox.text and "3 x Standing" in mailbox.text


async def test_500_buyers_for_the_last_100_tickets(buyer, mailoutbox):
    """The rush: 500 concurrent requests through Django's real ASGI handler."""
    ticket = await make_event(capacity=1000, sold=900)
    # httpx straight into the ASGI application, not Django's test client: the
    # test client instruments every template render of every client, which
    # makes 500 concurrent clients quadratic, and it skips the CSRF check.
    transport = httpx.ASGITransport(app=get_asgi_application())
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        cookie = settings.SESSION_COOKIE_NAME
        client.cookies[cookie] = buyer.cookies[cookie].value  # logged in as fan
        page = await client.get(f"/events/{ticket.event_id}/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]

        async def buy() -> httpx.Response:
            data = {"ticket_type": ticket.pk, "quantity": 1, "csrfmiddlewaretoken": token}
            return await client.post(f"/events/{ticket.event_id}/buy/", data=data)

        responses = await asyncio.gather(*(buy() for _ in range(500)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(303) == 100
    assert statuses.count(409) == 400
    assert all(r.text.count("Sold out") == 1 for r in responses if r.status_code == 409)
    await ticket.arefresh_from_db()
    assert ticket.sold == ticket.capacity == 1000  # sold out, not oversold
    assert await Order.objects.acount() == 100
    assert len(mailoutbox) == 100  # one confirmation per order


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


@pytest.fixture(params=["redis", "locmem"])
async def dashboard_cache(request, settings):
    """The demo's Redis cache (under a key prefix of this test's own), or LocMemCache."""
    if request.param == "redis":
        require_service(REDIS_CACHE["LOCATION"], "Redis")
        config = {**REDIS_CACHE, "KEY_PREFIX": f"onsale-test-{uuid.uuid4().hex}"}
    else:
        config = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    settings.CACHES = {"default": config}
    cache = caches["default"]
    yield cache
    # Not clear(): on Redis that empties the whole database, whoever else uses it.
    await cache.adelete(dashboard.CACHE_KEY)


async def test_the_dashboard_is_served_from_the_cache(upstream, dashboard_cache):
    await make_event(capacity=50, sold=5)
    client = AsyncClient()
    first = await client.get("/dashboard/")
    assert "Collected now, and cached for 30" in first.text
    snapshot = await dashboard_cache.aget(dashboard.CACHE_KEY)
    assert snapshot["parts"]["events"].result == {"events": 1}
    assert snapshot["parts"]["tickets"].result["tickets_sold"] == 5

    # Change what the cache holds: the next page shows that, not the database's count.
    snapshot["parts"]["events"].result = {"events": 4242}
    await dashboard_cache.aset(dashboard.CACHE_KEY, snapshot, dashboard.CACHE_SECONDS)
    second = await client.get("/dashboard/")
    assert "From the cache" in second.text and '<td class="num">4242</td>' in second.text

    # An experiment (?latency=) is collected every time, from the database.
    experiment = await client.get("/dashboard/?latency=0")
    assert "not cached" in experiment.text and '<td class="num">1</td>' in experiment.text
    assert (await dashboard_cache.aget(dashboard.CACHE_KEY))["parts"]["events"].result == {"events": 4242}


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
