"""Scenario 8: a long run of mixed load, watching for anything that drifts.

200 clients send requests one after another through Django's
``ASGIHandler`` for ten minutes (``--soak-minutes``; a quick run: 30 s):
reads (a 20 ms query, then a count of the request's own rows), writes (a
transaction of two rows around a 20 ms query), writes by child tasks
joining a transaction, and one request in twenty abandoned by its client
at a random moment (``chaos.scenarios.abandon.Client``). Every ten seconds
the runner notes resident memory and the window's latencies.

What must hold: no request fails except the abandoned ones; every request
has 0 or 2 rows, at least as many have 2 as writes answered 200; memory
does not climb: the slope of resident memory over the run after its first
fifth (warm-up) stays under 1 MB a minute; p99 latency does not drift: the
last third's is at most twice the first third's (both enforced on a full
run only: 30 s is too short to tell); the books balance.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
from dataclasses import dataclass, field

from django.db.models import Count

from chaos.app.models import Pair
from chaos.books import Hung, Run, rss_mb
from chaos.scenarios.abandon import Client

CLIENTS = 200
MINUTES_ENV = "TANDEM_CHAOS_SOAK_MINUTES"
MINUTES, QUICK_MINUTES = 10.0, 0.5
WINDOW = 10.0  # seconds per sample
QUICK_WINDOW = 2.0
ABANDON_SHARE, ABANDON_WITHIN = 0.05, 0.1
# A read counts only its own request's rows (``steady_read``): scenario 1's
# read counts the whole table, whose cost would grow with the soak's writes
# and pass for a slowdown of the code under test.
KINDS = ("steady_read", "write", "children")
SLOPE_LIMIT = 1.0  # MB per minute, after the warm-up
P99_DRIFT_LIMIT = 2.0
REQUEST_LIMIT = 30.0


@dataclass
class Window:
    """The latencies of the requests that ended in one window of time."""

    latencies: list[float] = field(default_factory=list)

    def close(self, at: float) -> dict:
        """The window's summary, with resident memory now; its latencies are dropped."""
        ordered = sorted(self.latencies)
        self.latencies = []  # the runner's own memory must not grow with the run
        return {
            "at_s": round(at),
            "rss_mb": round(rss_mb(), 1),
            "requests": len(ordered),
            "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else 0.0,
            "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 1) if ordered else 0.0,
        }


def minutes_at_most() -> float:
    """How long a soak of this process may run, in minutes (for its deadline)."""
    return float(os.environ.get(MINUTES_ENV) or MINUTES)


async def soak(run: Run) -> None:
    tally = run.tally
    minutes = float(os.environ.get(MINUTES_ENV) or (QUICK_MINUTES if run.quick else MINUTES))
    window_seconds = QUICK_WINDOW if run.quick else WINDOW
    rng = random.Random(f"soak-{run.vendor}")
    client = Client()
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + minutes * 60
    current = Window()
    samples: list[dict] = []
    counts = {"ok writes": 0, "abandoned writes": 0, "abandoned": 0}
    numbers = iter(range(10**9))

    async def one(n: int) -> None:
        kind = KINDS[n % len(KINDS)]
        leave = rng.uniform(0, ABANDON_WITHIN) if rng.random() < ABANDON_SHARE else None
        started = loop.time()
        status = await client.get(f"/{kind}/{n}/", leave_after=leave)
        if status is None:
            counts["abandoned"] += 1
            counts["abandoned writes"] += kind != "steady_read"
            tally.expect(f"client went away ({kind})")
            return
        current.latencies.append(loop.time() - started)
        if status != 200:
            tally.fail(f"{kind} {n}: status {status}")
        elif kind != "steady_read":
            counts["ok writes"] += 1

    async def user() -> None:
        while loop.time() < end:
            n = next(numbers)
            tally.requests += 1
            try:
                await run.bounded(one(n), REQUEST_LIMIT)
            except Hung:
                pass
            except Exception as exc:
                tally.fail_with(exc, f"request {n}")

    async def sampler() -> None:
        nonlocal current
        while loop.time() < end:
            await asyncio.sleep(window_seconds)
            ended, current = current, Window()
            samples.append(ended.close(loop.time() - start))

    sampling = run.spawn(sampler(), name="soak-sampler")
    await asyncio.gather(*(user() for _ in range(CLIENTS)))
    await sampling
    tally.faults += counts["abandoned"]

    rows = {n: c async for n, c in Pair.objects.values_list("request").annotate(c=Count("id")).order_by()}
    halves = sum(c != 2 for c in rows.values())
    tally.check(not halves, f"{halves} requests with half a pair")
    pairs = sum(c == 2 for c in rows.values())
    tally.check(
        counts["ok writes"] <= pairs <= counts["ok writes"] + counts["abandoned writes"],
        f"{pairs} requests wrote their pair, for {counts['ok writes']} writes answered 200 "
        f"and {counts['abandoned writes']} abandoned",
    )
    _judge_drift(run, [s for s in samples if s["requests"]])


def _judge_drift(run: Run, samples: list[dict]) -> None:
    """Memory slope and p99 drift over the run, after its warm-up."""
    tally = run.tally
    steady = samples[len(samples) // 5 :]
    slope = _slope([(s["at_s"] / 60, s["rss_mb"]) for s in steady])
    third = max(1, len(steady) // 3)
    first = statistics.median(s["p99_ms"] for s in steady[:third]) if steady else 0.0
    last = statistics.median(s["p99_ms"] for s in steady[-third:]) if steady else 0.0
    drift = last / first if first else 0.0
    if not run.quick:
        tally.check(slope <= SLOPE_LIMIT, f"resident memory climbs {slope:.2f} MB a minute after warm-up")
        tally.check(drift <= P99_DRIFT_LIMIT, f"p99 latency drifted {drift:.2f}x ({first} ms -> {last} ms)")
    tally.figures.update(
        rss_slope_mb_per_min=round(slope, 3),
        p99_first_third_ms=first,
        p99_last_third_ms=last,
        p99_drift=round(drift, 2),
        windows=samples,
    )


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 for fewer than two points)."""
    if len(points) < 2:
        return 0.0
    xs, ys = zip(*points, strict=True)
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
