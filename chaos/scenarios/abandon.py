"""Scenario 3: requests abandoned by their clients at random points.

Requests go to Django's real ``ASGIHandler``, driven here as an ASGI server
would: the request's body, then, at a random moment, ``http.disconnect``
(what a server sends when the client goes away). Django then cancels the
view's task. The view (``chaos.app.views.stages``) takes a connection, runs
a query, then a transaction writing the request's two ``Pair`` rows with a
query between them; one query in ten takes a second, so many disconnects
land on a long query. 200 requests are in flight at a time, ten times the
pool's 20 connections, so many land while waiting for the pool.

What must hold:

* every abandoned query is cancelled on the server: the runner watches the
  server's running queries (``pg_stat_activity``; MariaDB's process list)
  and none may still run half a second after Django has cancelled its
  request (SQLite: the books show no connection still busy);
* an abandoned transaction writes nothing: every request has 0 or 2 rows,
  one that completed has 2;
* nothing accumulates: memory after the storm is within 10 % of before it,
  and a burst of plain requests after it runs at least 0.9x as fast as
  before it (medians of three bursts);
* the books balance (no connection left checked out or in a transaction).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterator

from django.core.handlers.asgi import ASGIHandler
from django.db.models import Count

from chaos.app import views
from chaos.app.models import Pair
from chaos.books import Hung, Run, rss_mb

STORM, QUICK_STORM = 10_000, 1_000  # abandoned requests
WARM_UP, QUICK_WARM_UP = 2_500, 500  # abandoned requests before the baseline
IN_FLIGHT = 200
ABANDON_WITHIN = 0.25  # seconds: each client goes away at a random moment up to this
LONG_SHARE, LONG_SECONDS = 0.1, 1.0  # one query in ten takes a second
BURST, QUICK_BURST, BURST_IN_FLIGHT = 1000, 200, 50  # plain requests, to measure throughput
BURSTS = 5  # the median of five bursts; a quick run reports the ratio, a full run enforces it
GRACE = 0.5  # seconds a cancelled query may still show on the server
FORGET_AFTER = 30.0  # seconds the watcher remembers an abandoned request
MEMORY_TOLERANCE, THROUGHPUT_FLOOR = 0.10, 0.9
REQUEST_LIMIT = 60.0
# The view's query as the server shows it: "SELECT 123::int, pg_sleep(1.0)".
ECHO = re.compile(r"SELECT (\d+)(?:::int)?, (?:pg_sleep|SLEEP)\(", re.IGNORECASE)


class Client:
    """Sends GET requests straight to the ASGI handler, like a server, and can walk away."""

    def __init__(self) -> None:
        self.handler = ASGIHandler()

    async def get(self, path: str, query: str = "", leave_after: float | None = None) -> int | None:
        """The response's status, or None if the client left (``leave_after`` s) before it."""
        loop = asyncio.get_running_loop()
        gone = asyncio.Event()
        statuses: list[int] = []
        body_sent = False

        async def receive() -> dict:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        timer = loop.call_later(leave_after, gone.set) if leave_after is not None else None
        try:
            await self.handler(_scope(path, query), receive, send)
        finally:
            if timer is not None:
                timer.cancel()
        if gone.is_set() and not statuses:
            return None
        return statuses[0] if statuses else 0


def _scope(path: str, query: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"chaos")],
        "client": ("127.0.0.1", 50000),
        "server": ("chaos", 80),
    }


async def abandoned_requests(run: Run) -> None:
    tally = run.tally
    rng = random.Random(f"abandon-{run.vendor}")
    client = Client()
    storm = QUICK_STORM if run.quick else STORM
    burst = QUICK_BURST if run.quick else BURST
    numbers = itertools.count()

    async def plain(n: int) -> None:
        status = await client.get(f"/stages/{n}/")
        views.STAGES.pop(n, None)
        if status != 200:
            tally.fail(f"plain request {n}: status {status}")
        completed.add(n)

    async def bursts() -> list[float]:
        rates = []
        for _ in range(BURSTS):
            started = time.perf_counter()
            await _drive(run, plain, numbers, burst, BURST_IN_FLIGHT)
            rates.append(burst / (time.perf_counter() - started))
            tally.requests += burst
        return rates

    completed: set[int] = set()
    left_at: dict[int, float] = {}  # request -> when Django had cancelled it (loop time)
    stages: Counter = Counter()
    long_cancelled = abandoned_count = 0

    async def abandoned(n: int) -> None:
        nonlocal long_cancelled, abandoned_count
        query = LONG_SECONDS if rng.random() < LONG_SHARE else rng.uniform(0.005, 0.03)
        tx = LONG_SECONDS if rng.random() < LONG_SHARE else rng.uniform(0.005, 0.03)
        leave = rng.uniform(0, ABANDON_WITHIN)
        status = await client.get(f"/stages/{n}/", f"query={query}&tx={tx}", leave_after=leave)
        if status is None:
            left_at[n] = asyncio.get_running_loop().time()
            abandoned_count += 1
            stage = views.STAGES.pop(n, "not started")
            stages[stage] += 1
            long_cancelled += stage == "query" and query == LONG_SECONDS
            tally.expect(f"client went away while the view was at: {stage}")
        elif status == 200:
            views.STAGES.pop(n, None)
            completed.add(n)
        else:
            tally.fail(f"request {n}: status {status}")

    # Warm up: plain requests, then a smaller storm, so that the baseline is a
    # process that has served this load before (the allocator's high-water
    # mark at 200 requests in flight, Django's and tandem's caches, the pool
    # full: measured, the first 2,500 abandoned requests raise resident
    # memory by ~6 MB, the next 17,500 by ~2 MB). Then the baseline:
    # throughput and memory before the storm.
    await _drive(run, plain, numbers, 100, BURST_IN_FLIGHT)
    warm_up = QUICK_WARM_UP if run.quick else WARM_UP
    await _drive(run, abandoned, numbers, warm_up, IN_FLIGHT)
    tally.requests += warm_up
    before = await bursts()
    memory_before, objects_before = await _memory()

    watching = asyncio.Event()
    still_running: set[int] = set()
    watcher = run.spawn(_watch_server(run, left_at, still_running, watching), name="query-watcher")
    curve = []  # memory after each quarter of the storm: a leak climbs, a high-water mark is flat
    for _ in range(4):
        await _drive(run, abandoned, numbers, storm // 4, IN_FLIGHT)
        curve.append(round((await _memory())[0], 1))
    tally.requests += storm
    tally.faults += abandoned_count
    await asyncio.sleep(GRACE * 2)  # the watcher's last look covers the last cancellations
    watching.set()
    await watcher

    memory_after, objects_after = await _memory()
    after = await bursts()

    tally.check(
        not still_running,
        f"{len(still_running)} abandoned requests' queries still ran on the server "
        f"{GRACE:g} s after Django cancelled them: {sorted(still_running)[:10]}",
    )
    counts = {n: c async for n, c in Pair.objects.values_list("request").annotate(c=Count("id")).order_by()}
    halves = sorted(n for n, c in counts.items() if c != 2)
    tally.check(not halves, f"requests with half a pair (an abandoned transaction wrote): {halves[:10]}")
    lost = sorted(n for n in completed if counts.get(n) != 2)
    tally.check(not lost, f"completed requests whose rows are missing: {lost[:10]}")
    grown = memory_after / memory_before - 1
    tally.check(
        grown <= MEMORY_TOLERANCE,
        f"memory grew {grown:+.0%} over the storm ({memory_before:.0f} -> {memory_after:.0f} MB)",
    )
    ratio = statistics.median(after) / statistics.median(before)
    if not run.quick:  # a quick run's bursts are too short to compare
        tally.check(ratio >= THROUGHPUT_FLOOR, f"throughput after the storm is {ratio:.2f}x before it")
    tally.figures.update(
        abandoned=abandoned_count,
        completed_before_leaving=warm_up + storm - abandoned_count,
        abandoned_at=dict(stages.most_common()),
        long_queries_cancelled=long_cancelled,
        memory_mb={"before": round(memory_before, 1), "quarters": curve, "after": round(memory_after, 1)},
        python_objects={"before": objects_before, "after": objects_after},
        requests_per_second={
            "before": [round(r) for r in before],
            "after": [round(r) for r in after],
            "ratio": round(ratio, 2),
        },
    )
    views.STAGES.clear()


async def _memory() -> tuple[float, int]:
    """Resident MB and live Python objects, after a full collection.

    The collection runs in a thread: it still holds the GIL (the loop waits
    for it, as for any collection), but the runner does not count it as a
    pause of the code under test.
    """
    await asyncio.to_thread(gc.collect)
    return rss_mb(), len(gc.get_objects())


async def _drive(run: Run, request, numbers: Iterator[int], count: int, in_flight: int) -> None:
    """``request(n)`` for the next ``count`` numbers, ``in_flight`` at a time.

    ``in_flight`` clients each send one request after another: the runner's
    own memory stays that of ``in_flight`` requests, whatever ``count``.
    """
    todo = itertools.islice(numbers, count)

    async def client() -> None:
        for n in todo:
            try:
                await run.bounded(request(n), REQUEST_LIMIT)
            except Hung:
                pass
            except Exception as exc:
                run.tally.fail_with(exc, f"request {n}")

    await asyncio.gather(*(client() for _ in range(in_flight)))


async def _watch_server(run: Run, left_at: dict[int, float], found: set[int], done: asyncio.Event) -> None:
    """Note every abandoned request whose query the server still runs ``GRACE`` s later."""
    if run.vendor == "sqlite":
        return  # no server: the books check that no connection is left busy
    loop = asyncio.get_running_loop()
    while not done.is_set():
        # Forget requests abandoned long ago (the runner's memory is measured
        # too): their queries would have shown for many rounds already.
        while left_at and loop.time() - next(iter(left_at.values())) > FORGET_AFTER:
            del left_at[next(iter(left_at))]
        for text in await run.admin.running_queries():
            match = ECHO.search(text)
            if match is None:
                continue
            n = int(match.group(1))
            if n in left_at and loop.time() - left_at[n] > GRACE:
                found.add(n)
        await asyncio.sleep(0.05)
