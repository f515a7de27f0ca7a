"""Scenario 1: tandem's connections killed while requests are in flight.

Requests go through Django's real ``ASGIHandler`` (httpx's ASGI transport),
in turn: a read (a query that takes 20 ms, echoing the request's number,
then a count of the ``Pair`` rows), a write (two ``Pair`` rows in one
``aatomic`` block, with that slow query between them), and the same write
done by two child tasks that join the block. First 200 in flight at a time
(tasks always queue for the pool's 20 connections), then 10 at a time (the
pool has connections to spare: a connection goes back to it at the task's
next turn instead of at once, another path).
Meanwhile the server ends one of tandem's sessions every few milliseconds
(``pg_terminate_backend``; MariaDB/MySQL: ``KILL``), busy ones by preference.

What must hold:

* a request either answers right (its own number; an even row count) or
  fails with a clear error: a ``django.db`` error, turned into a 503 by the
  project's middleware (``chaos.app.middleware``); never a hang, a wrong
  answer or another exception, and no more failed requests than kills;
* an interrupted transaction writes nothing: every request has 0 or 2 rows,
  a write answered 200 has 2 (one that failed may have 2 if the kill came
  as it committed: counted as "in doubt");
* the pool replaces dead connections: once the kills stop, every request of
  a further wave succeeds, and the pool is back to at most ``max_size``,
  all idle.

The alias has ``CONN_HEALTH_CHECKS = True``, so a connection killed while
idle in the pool is pinged, found dead and replaced before anyone gets it.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db.models import Count

from chaos.app.models import Pair
from chaos.books import Hung, Run
from tandem.db.pool import loop_pools

REQUESTS, QUICK_REQUESTS = 4000, 400  # with 200 in flight; a quarter as many with 10
IN_FLIGHT, LIGHT_IN_FLIGHT = 200, 10
AFTER = 100  # requests once the kills have stopped: all must succeed
KILL_EVERY = 0.02  # seconds between two kills
REQUEST_LIMIT = 30.0  # seconds before a request counts as hung
KINDS = ("read", "write", "children")  # request n goes to /<KINDS[n % 3]>/n/


async def killed_connections(run: Run) -> None:
    tally = run.tally
    rng = random.Random(f"kills-{run.vendor}")
    total = QUICK_REQUESTS if run.quick else REQUESTS
    statuses: Counter = Counter()
    failed_writes: set[int] = set()
    ok_writes: set[int] = set()
    kills = 0
    seen: set[int] = set()  # server sessions the pool opened: the first ones and their replacements
    stop = asyncio.Event()

    async def killer() -> None:
        nonlocal kills
        while not stop.is_set():
            await asyncio.sleep(KILL_EVERY)
            sessions = await run.admin.sessions()
            seen.update(s.id for s in sessions)
            busy = [s for s in sessions if s.busy]
            if sessions and await run.admin.kill(rng.choice(busy or sessions).id):
                kills += 1

    async def request(client: httpx.AsyncClient, gate: asyncio.Semaphore, n: int, storm: bool) -> None:
        kind = KINDS[n % len(KINDS)]
        async with gate:
            response = await client.get(f"/{kind}/{n}/")
        statuses[response.status_code] += 1
        try:
            body = response.json()
        except ValueError:
            body = {"body": response.text[:200]}
        if response.status_code == 200:
            if body.get("n") != n:
                tally.fail(f"{kind} {n}: a wrong answer: {body}")
            elif kind == "read":
                tally.check(body["rows"] % 2 == 0, f"read {n} counted {body['rows']} rows: half a pair")
            else:
                ok_writes.add(n)
            return
        if kind != "read":
            failed_writes.add(n)
        error = body.get("error", "")
        clear = response.status_code == 503 and error.startswith("django.db.") and "PoolTimeout" not in error
        if storm and clear:
            tally.expect(f"{error}: {body.get('message', '')}"[:160])
        else:
            tally.fail(f"{kind} {n}{'' if storm else ' (after the kills)'}: {response.status_code} {body}")

    async def wave(client: httpx.AsyncClient, numbers: range, in_flight: int, storm: bool) -> None:
        gate = asyncio.Semaphore(in_flight)
        jobs = [run.bounded(request(client, gate, n, storm), REQUEST_LIMIT) for n in numbers]
        for n, result in zip(numbers, await asyncio.gather(*jobs, return_exceptions=True), strict=True):
            if isinstance(result, BaseException) and not isinstance(result, Hung):
                tally.fail_with(result, f"request {n}")

    transport = httpx.ASGITransport(app=ASGIHandler())
    async with httpx.AsyncClient(transport=transport, base_url="http://chaos") as client:
        killing = run.spawn(killer(), name="killer")
        light = total + total // 4
        try:
            await wave(client, range(total), IN_FLIGHT, storm=True)
            await wave(client, range(total, light), LIGHT_IN_FLIGHT, storm=True)
        finally:
            stop.set()
            await killing
        tally.faults += kills
        await asyncio.sleep(0.2)  # the last killed sessions end on the server
        await wave(client, range(light, light + AFTER), IN_FLIGHT, storm=False)
    tally.requests += light + AFTER

    tally.check(
        tally.expected <= kills,
        f"{tally.expected} requests failed but only {kills} connections were killed",
    )
    counts = {n: c async for n, c in Pair.objects.values_list("request").annotate(c=Count("id")).order_by()}
    halves = sorted(n for n, c in counts.items() if c != 2)
    tally.check(not halves, f"requests with half a pair (an interrupted transaction wrote): {halves[:10]}")
    lost = sorted(n for n in ok_writes if counts.get(n) != 2)
    tally.check(not lost, f"writes answered 200 whose rows are missing: {lost[:10]}")
    pool = loop_pools()["default"]
    size = settings.POOLS["default"]["max_size"]
    tally.check(pool.size <= size, f"the pool holds {pool.size} connections, above {size}")
    tally.figures.update(
        kills=kills,
        sessions_seen=len(seen),
        statuses=dict(statuses),
        writes_committed=len(ok_writes),
        writes_failed=len(failed_writes),
        writes_in_doubt=sum(counts.get(n) == 2 for n in failed_writes),
    )
