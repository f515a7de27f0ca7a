"""Scenario 2: the database server goes away for 5 s under load, then comes back.

The aliases ``outage`` (health checks on) and ``outage_unchecked`` (off)
reach the database through a TCP proxy on loopback (``chaos.proxy``) with
the timeouts a project sets (``chaos.settings.OUTAGE_TIMEOUTS``): connect
2 s, pool 3 s, statement 1 s. Fifty clients send requests one after another
through Django's ``ASGIHandler`` (a query, then a transaction writing the
request's two ``Pair`` rows); after a while the proxy

* ``2a``/``2b``: **cuts** the server away: every connection closed, new
  ones refused, as when the server is stopped; or
* ``2c``: **freezes** it: connections closed, new ones accepted and never
  answered, as when the server hangs;

and restores it 5 s later. What must hold:

* before the outage every request succeeds; a statement longer than the
  statement timeout fails at that timeout (``2a``);
* during it every request fails with a clear ``django.db`` error (or the
  pool's timeout), each within the pool timeout plus the connect timeout:
  none waits longer, none hangs (``2c``: connecting fails at the connect
  timeout, not before);
* service is back at most 2 s after the server: every request started
  later succeeds;
* no partial write; the books balance.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db.models import Count

from chaos.app.models import Pair
from chaos.books import Hung, Run
from chaos.proxy import Proxy

CLIENTS = 50
BEFORE, QUICK_BEFORE = 3.0, 1.0  # seconds of normal service before the outage
OUTAGE = 5.0
AFTER, QUICK_AFTER = 5.0, 3.0
BACK_WITHIN = 2.0  # seconds after the server returns by which every request succeeds
SLACK = 1.0  # seconds of scheduling slack on top of a configured timeout
REQUEST_LIMIT = 30.0
SLOW_QUERY = 3.0  # seconds: longer than the statement timeout


@dataclass(frozen=True)
class Outcome:
    """One request: when it started and ended (seconds since the start), how it ended."""

    n: int
    started: float
    ended: float
    status: int
    error: str

    @property
    def took(self) -> float:
        return self.ended - self.started


async def server_stopped(run: Run) -> None:
    """``2a``: cut, health checks on; also checks the statement timeout."""
    await _outage(run, "outage", freeze=False, statement_timeout=True)


async def server_stopped_unchecked(run: Run) -> None:
    """``2b``: cut, health checks off."""
    await _outage(run, "outage_unchecked", freeze=False)


async def server_frozen(run: Run) -> None:
    """``2c``: frozen, health checks on."""
    await _outage(run, "outage", freeze=True)


async def _outage(run: Run, alias: str, freeze: bool, statement_timeout: bool = False) -> None:
    tally = run.tally
    db = settings.DATABASES[alias]
    proxy = Proxy(settings.OUTAGE_PORT, settings.DATABASES["default"]["HOST"] or "127.0.0.1", _port(run))
    proxy.start()
    timeouts = settings.OUTAGE_TIMEOUTS
    transport = httpx.ASGITransport(app=ASGIHandler())
    loop = asyncio.get_running_loop()
    zero = loop.time()
    outcomes: list[Outcome] = []
    stop = asyncio.Event()
    numbers = iter(range(10**9))

    async def client(http: httpx.AsyncClient) -> None:
        while not stop.is_set():
            n = next(numbers)
            started = loop.time() - zero
            try:
                response = await run.bounded(http.get(f"/on/{alias}/{n}/"), REQUEST_LIMIT)
            except Hung:
                continue
            body = _json(response)
            error = (
                f"{body.get('error', '')}: {body.get('message', '')}" if response.status_code != 200 else ""
            )
            outcomes.append(Outcome(n, started, loop.time() - zero, response.status_code, error))

    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://chaos", timeout=None) as http:
            if statement_timeout:
                await _check_statement_timeout(run, http, alias, timeouts["statement"])
            clients = [run.spawn(client(http), name=f"client-{i}") for i in range(CLIENTS)]
            await asyncio.sleep(QUICK_BEFORE if run.quick else BEFORE)
            down = loop.time() - zero
            await (proxy.afreeze() if freeze else proxy.acut())
            tally.faults += 1
            await asyncio.sleep(OUTAGE)
            await proxy.arestore()
            up = loop.time() - zero
            await asyncio.sleep(QUICK_AFTER if run.quick else AFTER)
            stop.set()
            await asyncio.gather(*clients, return_exceptions=True)
    finally:
        proxy.stop()

    _judge(run, outcomes, down, up, timeouts, freeze)
    # The proxy is gone: count through the default alias (the same database).
    counts = {n: c async for n, c in Pair.objects.values_list("request").annotate(c=Count("id")).order_by()}
    halves = sorted(n for n, c in counts.items() if c != 2)
    tally.check(not halves, f"requests with half a pair (an interrupted transaction wrote): {halves[:10]}")
    lost = sorted(o.n for o in outcomes if o.status == 200 and counts.get(o.n) != 2)
    tally.check(not lost, f"requests answered 200 whose rows are missing: {lost[:10]}")
    tally.figures["health_checks"] = db["CONN_HEALTH_CHECKS"]


def _judge(run: Run, outcomes: list[Outcome], down: float, up: float, timeouts: dict, freeze: bool) -> None:
    """Count every request and check it against the phase it started in."""
    tally = run.tally
    tally.requests += len(outcomes)
    bound = timeouts["pool"] + timeouts["connect"] + SLACK
    phases: Counter = Counter()
    failed_after: list[Outcome] = []
    slowest_in_outage = 0.0
    for o in outcomes:
        ok = o.status == 200
        clear = o.status == 503 and o.error.startswith(("django.db.", "tandem.db.pool.PoolTimeout"))
        if o.ended <= down:
            phase = "before"
            if not ok:
                tally.fail(f"request {o.n} before the outage: {o.status} {o.error}")
        elif o.started < up:
            phase = "outage"
            slowest_in_outage = max(slowest_in_outage, o.took)
            if not ok and not clear:
                tally.fail(f"request {o.n} during the outage: {o.status} {o.error}")
            elif not ok:
                tally.expect(o.error[:160])
            if o.took > bound:
                tally.fail(f"request {o.n} took {o.took:.2f} s, beyond pool + connect timeouts ({bound:g} s)")
        else:
            phase = "after"
            if not ok:
                failed_after.append(o)
                if o.started > up + BACK_WITHIN or not clear:
                    tally.fail(f"request {o.n} {o.started - up:.2f} s after the server came back: {o.error}")
                else:
                    tally.expect(f"(just after the server came back) {o.error}"[:160])
        phases[f"{phase} {'ok' if ok else 'failed'}"] += 1
    back = max((o.started - up for o in failed_after), default=0.0)
    tally.check(
        any(o.status == 200 and o.started >= up + BACK_WITHIN for o in outcomes),
        "no request succeeded once the server was back",
    )
    connect_failures = [o for o in outcomes if _connect_timed_out(o.error)]
    if freeze:
        early = [o for o in connect_failures if o.took < timeouts["connect"] * 0.9]
        tally.check(not early, f"{len(early)} connect timeouts fired before {timeouts['connect']} s")
        tally.check(bool(connect_failures), "no request reported the connect timeout while frozen")
    tally.figures.update(
        phases=dict(phases),
        outage_seconds=round(up - down, 2),
        slowest_request_in_outage_s=round(slowest_in_outage, 2),
        bound_s=bound,
        back_after_s=round(back, 2),
        connect_timeouts=len(connect_failures),
        shortest_connect_timeout_s=round(min((o.took for o in connect_failures), default=0.0), 2),
    )


async def _check_statement_timeout(run: Run, http: httpx.AsyncClient, alias: str, limit: float) -> None:
    """A statement longer than the statement timeout fails at it, with a clear error."""
    started = time.perf_counter()
    response = await http.get(f"/slow/{alias}/", params={"seconds": SLOW_QUERY})
    took = time.perf_counter() - started
    body = _json(response)
    run.tally.requests += 1
    run.tally.faults += 1
    if response.status_code == 503 and body.get("error", "").startswith("django.db."):
        run.tally.expect(f"(statement timeout) {body['error']}: {body.get('message', '')}"[:160])
    else:
        run.tally.fail(
            f"a {SLOW_QUERY:g} s statement with a {limit:g} s timeout: {response.status_code} {body}"
        )
    run.tally.check(
        limit * 0.9 <= took <= limit * 1.1 + 0.1,
        f"the {limit:g} s statement timeout fired after {took:.2f} s",
    )
    run.tally.figures["statement_timeout_fired_after_s"] = round(took, 3)


def _connect_timed_out(error: str) -> bool:
    """True for the drivers' "connect timeout" errors.

    psycopg: "connection timeout expired"; mysqlclient: 2013 "Lost
    connection ... at 'handshake: reading initial communication packet',
    system error: 110" (ETIMEDOUT).
    """
    return "connection timeout expired" in error or ("handshake" in error and "system error: 110" in error)


def _port(run: Run) -> int:
    port = settings.DATABASES["default"]["PORT"]
    return int(port) if port else (5432 if run.vendor == "postgresql" else 3306)


def _json(response: httpx.Response) -> dict:
    try:
        return response.json()
    except ValueError:
        return {"error": "not JSON", "message": response.text[:200]}
