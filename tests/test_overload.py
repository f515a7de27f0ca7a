"""Requests the client abandons leave nothing behind.

1000 requests go through Django's real ASGI handler, far more than the pool
has connections: some sit in a long query, most wait for a connection. The
client goes away from all of them at random moments. Afterwards nothing
may be left: no task, no busy greenlet, no pool waiter, no checked-out
connection, no query still running on the server; and the next requests
are served.
"""

import asyncio
import io
import random

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.db import connections
from django.test import override_settings

from tandem.bridge import unfinished_bridges
from tandem.db import scope
from tandem.db.pool import loop_pools
from tests.app import views
from tests.db import TEST_DB, _admin_query

pytestmark = pytest.mark.django_db(transaction=True)
REQUESTS = 1000
AFTER_STORM_SECONDS = 60  # 50 plain requests take well under a second


def _scope(path: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80),
    }


async def request(handler, path: str, leave_after: float | None = None) -> list[dict]:
    """One request; the client disconnects after ``leave_after`` seconds."""
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive():
        if messages:
            return messages.pop()
        if leave_after is None:
            await asyncio.Event().wait()  # never: the response ends the request
        await asyncio.sleep(leave_after)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    await handler(_scope(path), receive, send)
    return sent


def _busy_on_server() -> int:
    """Connections of the test suite that are not idle on the server."""
    if TEST_DB == "postgresql":
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tandem-tests' "
            "AND state <> 'idle'"
        )
        return _admin_query(sql, [])[0][0]
    if TEST_DB == "mysql":
        sql = "SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s"
        return _admin_query(sql, ["SELECT SLEEP(5)%"])[0][0]
    return 0  # SQLite: in-process, the pool check below covers it


def _stacks() -> str:
    """Where every other task of the loop is, for a failure message."""
    out = io.StringIO()
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.print_stack(limit=8, file=out)
    return out.getvalue()[-20000:]


@override_settings(MIDDLEWARE=["tests.app.middleware.RecordingMiddleware"])
async def test_a_thousand_abandoned_requests_leave_nothing_behind():
    views.cancelled.clear()
    handler = ASGIHandler()
    rng = random.Random(9)
    storm = [
        asyncio.create_task(request(handler, "/hang/", leave_after=rng.uniform(0.05, 0.8)))
        for _ in range(REQUESTS)
    ]
    done, pending = await asyncio.wait(storm, timeout=30)
    assert not pending, f"{len(pending)} abandoned requests never ended"
    for task in done:
        task.result()  # the handler itself raised nothing
    assert views.cancelled, "no view was cancelled mid-query"

    await asyncio.sleep(0.05)  # one more loop turn for connections going back
    assert asyncio.all_tasks() == {asyncio.current_task()}
    pool = loop_pools()["default"]
    assert (pool.waiting, pool.has_waiters) == (0, False)
    assert pool.idle == pool.size, f"{pool.size - pool.idle} connections still checked out"
    assert unfinished_bridges() == []
    assert scope.at_rest()
    for _ in range(50):
        if _busy_on_server() == 0:
            break
        await asyncio.sleep(0.1)
    assert _busy_on_server() == 0

    try:
        async with asyncio.timeout(AFTER_STORM_SECONDS):
            served = await asyncio.gather(*(request(handler, "/sync/authors/") for _ in range(50)))
    except TimeoutError:
        pytest.fail(f"50 requests after the storm did not end in {AFTER_STORM_SECONDS} s:\n{_stacks()}")
    assert all(sent[0]["status"] == 200 for sent in served)
    connections.close_all()
