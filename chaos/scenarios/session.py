"""Scenario 6: no request ever sees session state another request left behind.

Requests go through Django's ``ASGIHandler``, 50 at a time over a pool of
20 connections. One in five changes its connection's session on purpose:
``SET search_path``, ``SET ROLE``, ``SET TIME ZONE``, ``set_config()``, a
temporary table, an advisory lock, a prepared statement (MariaDB: a user
variable, a session variable, the time zone, a temporary table hiding a real
one, a named lock; SQLite: a temporary table). Every request, dirty or not,
then reads all of that back in one query (``chaos.app.views.PROBES``).

What must hold: every clean request reads exactly what a fresh connection
reads (the baseline, taken first), whichever pooled connection it got; every
dirty request reads its own change (so the probe can see one); the books
balance. tandem closes a connection whose session a request changed instead
of pooling it (``docs/concepts/connections.md``); the cost is one new
connection per dirty request, reported.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time

import httpx
from django.core.handlers.asgi import ASGIHandler

from chaos.app.views import CHANGES, session_setup
from chaos.books import Hung, Run
from tandem import native

REQUESTS, QUICK_REQUESTS = 3000, 600
IN_FLIGHT = 50
DIRTY_SHARE = 0.2
REQUEST_LIMIT = 30.0


async def session_state(run: Run) -> None:
    tally = run.tally
    rng = random.Random(f"session-{run.vendor}")
    changes = sorted(CHANGES[run.vendor])
    # In a task of its own: DDL counts as changing the session, and a task keeps
    # such a connection until it ends (this one would be the runner's).
    await asyncio.create_task(native(session_setup)())
    transport = httpx.ASGITransport(app=ASGIHandler())
    total = QUICK_REQUESTS if run.quick else REQUESTS
    numbers = itertools.count()
    dirty_count = 0
    async with httpx.AsyncClient(transport=transport, base_url="http://chaos") as http:
        baseline = (await http.get("/session/probe/0/")).json()["probe"]

        async def one(n: int, dirty_share: float) -> None:
            nonlocal dirty_count
            kind = rng.choice(changes) if rng.random() < dirty_share else "probe"
            response = await http.get(f"/session/{kind}/{n}/")
            if response.status_code != 200:
                tally.fail(f"{kind} request {n}: {response.status_code} {response.text[:200]}")
                return
            probe = response.json()["probe"]
            if kind == "probe":
                leaked = {k: v for k, v in probe.items() if v != baseline[k]}
                tally.check(not leaked, f"request {n} saw another request's session state: {leaked}")
            else:
                dirty_count += 1
                tally.faults += 1
                tally.check(probe != baseline, f"request {n} changed {kind!r} but its probe cannot see it")

        async def client(count: int, dirty_share: float) -> None:
            for n in itertools.islice(numbers, count):
                try:
                    await run.bounded(one(n + 1, dirty_share), REQUEST_LIMIT)
                except Hung:
                    pass
                except Exception as exc:
                    tally.fail_with(exc, f"request {n}")

        async def phase(dirty_share: float) -> float:
            """Requests per second of ``total`` requests, ``dirty_share`` of them dirty."""
            started = time.perf_counter()
            await asyncio.gather(*(client(total // IN_FLIGHT, dirty_share) for _ in range(IN_FLIGHT)))
            return total / (time.perf_counter() - started)

        # The cost of closing dirty connections instead of pooling them: the
        # same requests, all clean, then one in five dirty.
        clean_rate = await phase(0.0)
        mixed_rate = await phase(DIRTY_SHARE)
    tally.requests += 2 * total + 1
    tally.figures.update(
        baseline=baseline,
        dirty_requests=dirty_count,
        changes=changes,
        requests_per_second={"all clean": round(clean_rate), "one in five dirty": round(mixed_rate)},
    )
