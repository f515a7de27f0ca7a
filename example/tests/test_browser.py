"""A real browser logs in, buys a ticket and reads the email: headless Chromium driven by Playwright.

The demo runs under uvicorn in a thread of this process, on the test
database, and mails the sink of ``conftest.py``. Needs Debian's ``chromium`` (``/usr/bin/chromium``, or
``TANDEM_CHROMIUM``) and the ``playwright`` package; Playwright's own browser
download is not used. Without them the test is skipped, and fails under
``TANDEM_REQUIRE_SERVICES=1`` (CI).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import uvicorn
from django.contrib.auth import get_user_model
from django.core.asgi import get_asgi_application
from django.utils import timezone
from shop.models import Event, Order, TicketType

from tests.conftest import free_port

CHROMIUM = os.environ.get("TANDEM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"


def _missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not os.path.exists(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set TANDEM_CHROMIUM)"
    return None


@pytest.fixture
async def browser():
    """A headless Chromium, or a skip (a failure in CI) saying what is missing."""
    reason = _missing()
    if reason:
        if os.environ.get("TANDEM_REQUIRE_SERVICES") == "1":
            pytest.fail(f"browser test needs: {reason}")
        pytest.skip(reason)
    from playwright.async_api import async_playwright

    # The async API: the sync one runs a loop in this thread, where Django's
    # sync ORM (rightly) refuses to run; here the test awaits tandem instead.
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        await browser.close()


@pytest.fixture
def live_demo(upstream_url, settings):
    """The demo under uvicorn on a free port, for the duration of a test."""
    settings.UPSTREAM_URL = upstream_url
    port = free_port()
    config = uvicorn.Config(get_asgi_application(), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.django_db(transaction=True)
async def test_a_buyer_logs_in_buys_a_ticket_and_gets_the_email(browser, live_demo, mailsink):
    await get_user_model().objects.acreate_user("fan", "fan@example.com", "tickets, please")
    event = await Event.objects.acreate(
        name="Savepoint Sisters live", venue="Open Air Park", starts_at=timezone.now() + timedelta(days=3)
    )
    ticket = await TicketType.objects.acreate(
        event=event, name="Seated", price="45.00", capacity=150, sold=149
    )
    page = await browser.new_page()

    await page.goto(live_demo + "/")
    await page.get_by_role("link", name="Savepoint Sisters live").click()
    await page.wait_for_url(f"**/events/{event.pk}/")
    assert await page.locator(f'[data-ticket="{ticket.pk}"]').inner_text() == "1"

    # Logging in brings the buyer back to the event.
    await page.get_by_role("link", name="Log in to buy").click()
    await page.fill("input[name=username]", "fan")
    await page.fill("input[name=password]", "tickets, please")
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"**/events/{event.pk}/")
    assert await page.locator("#user").inner_text() == "fan"

    await page.select_option("select[name=ticket_type]", str(ticket.pk))
    await page.fill("input[name=quantity]", "1")
    await page.get_by_role("button", name="Buy").click()

    await page.wait_for_url("**/orders/*/")
    order = await Order.objects.aget()
    assert (await page.locator("#order").inner_text()).startswith(
        "1 \u00d7 Seated for Savepoint Sisters live"
    )
    SCREENSHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "order.png"), full_page=True)
    assert order.email == "fan@example.com"

    # The confirmation went through the SMTP sink, and the mailbox shows it.
    await page.get_by_role("link", name="your mailbox").click()
    await page.wait_for_url("**/mail/")
    assert f"Your onsale order {order.pk}" in await page.locator(".mail").first.inner_text()
    await page.screenshot(path=str(SCREENSHOTS / "mailbox.png"), full_page=True)

    # The last ticket is gone: the event page says so.
    await page.goto(f"{live_demo}/events/{event.pk}/")
    assert await page.locator(f'[data-ticket="{ticket.pk}"]').inner_text() == "sold out"
