"""The scenarios of issue 11 built so far, in the order the runner runs them.

Scenario 9 (``cancels``) is the cancellation issue's: tasks cancelled at
random points inside ``aatomic`` blocks, COMMIT included.

Each is an ``async def run(run: Run)`` that drives load and faults on the
scenario's own event loop, counts every request in ``run.tally``, and checks
its data invariants; the runner then balances the books (``chaos.books``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chaos.books import Run
from chaos.scenarios import abandon, cancels, isolation, kills, outage, pool, session, soak

ALL = ("postgresql", "mysql", "sqlite")
SERVERS = ("postgresql", "mysql")
# Scenario 7: these also run through PgBouncer in transaction mode (the "pgbouncer" database).
ALL_AND_PGBOUNCER = (*ALL, "pgbouncer")
SERVERS_AND_PGBOUNCER = (*SERVERS, "pgbouncer")


@dataclass(frozen=True)
class Scenario:
    """One row of the table per database it applies to."""

    key: str  # issue 11's number, and a letter for each part
    title: str
    run: Callable[[Run], Awaitable[None]]
    databases: tuple[str, ...]
    limit: float  # seconds the whole scenario may take before it counts as hung


SCENARIOS = (
    Scenario("4a", "pool exhaustion: waiters time out", pool.timeouts, ALL_AND_PGBOUNCER, 60),
    Scenario("4b", "pool exhaustion: cancelled waiters", pool.cancelled_waiters, ALL_AND_PGBOUNCER, 60),
    Scenario("5a", "isolation: transfers, some rolled back", isolation.transfers, ALL_AND_PGBOUNCER, 180),
    Scenario("5b", "isolation: savepoints", isolation.savepoints, ALL_AND_PGBOUNCER, 180),
    Scenario("5c", "isolation: child tasks", isolation.child_tasks, ALL_AND_PGBOUNCER, 180),
    Scenario("9", "cancels inside blocks: all or nothing", cancels.cancelled_blocks, ALL_AND_PGBOUNCER, 300),
    Scenario("1", "killed connections under load", kills.killed_connections, SERVERS_AND_PGBOUNCER, 240),
    Scenario("2a", "server stopped 5 s under load", outage.server_stopped, SERVERS, 120),
    Scenario("2b", "server stopped, no health checks", outage.server_stopped_unchecked, SERVERS, 120),
    Scenario("2c", "server frozen 5 s under load", outage.server_frozen, SERVERS, 120),
    Scenario("3", "abandoned requests", abandon.abandoned_requests, ALL, 600),
    Scenario("6", "session state never leaks", session.session_state, ALL, 180),
    Scenario("8", "soak: mixed load, c=200", soak.soak, ALL, 60 * soak.minutes_at_most() + 300),
)
