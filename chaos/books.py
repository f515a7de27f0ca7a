"""What a scenario counts, and the books every scenario must balance at its end.

A scenario counts its requests, the faults it injects, and how each request
ended: as the scenario expects (the clear error a fault must produce), or
not (anything else: a wrong answer, another exception, a 500), or not at all
(hung: still running at its deadline). At the end, whatever happened, the
books must balance (``balance``): no connection checked out or left in a
transaction, on the pool's side or the server's; no asyncio task left
behind; every pool back to its normal size; and, once the loop has closed,
no session and no worker thread left at all (``after_loop``).

Behind PgBouncer (the ``pgbouncer`` database) tandem's connections are
PgBouncer's clients, and the server's sessions are PgBouncer's own, pooled
across clients: the books count the clients against tandem's pools, and
require the server sessions to be idle, outside any transaction, and no more
than PgBouncer's pool size (``_pgbouncer_agrees``).
"""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from chaos import pgbouncer
from chaos.server import Admin, BehindPgBouncer

T = TypeVar("T")
NOTES_KEPT = 20  # details kept for each kind of problem

# How long the books may take to settle: the server ends a closed or killed
# session shortly after, not at once; pools return connections on the next turn.
SETTLE_SECONDS = 5.0


class Hung(Exception):  # noqa: N818 - a verdict, not an error
    """A request still running at its deadline."""


@dataclass
class Tally:
    """One scenario's counts, on one database."""

    key: str
    title: str
    database: str
    requests: int = 0
    faults: int = 0
    expected: int = 0
    unexpected: int = 0
    hung: int = 0
    leaked_connections: int = 0
    leaked_tasks: int = 0
    broken: int = 0  # checks of data invariants that failed
    broken_what: list[str] = field(default_factory=list)  # the first few of them
    notes: list[str] = field(default_factory=list)  # what the unexpected failures were
    errors: Counter = field(default_factory=Counter)  # the expected failures, by error
    figures: dict[str, Any] = field(default_factory=dict)  # measurements worth reporting
    memory_before_mb: float = 0.0
    memory_after_mb: float = 0.0
    seconds: float = 0.0
    max_loop_lag_ms: float = 0.0

    # -- counting -------------------------------------------------------------
    def expect(self, kind: str) -> None:
        """A request failed the way its fault must make it fail."""
        self.expected += 1
        self.errors[kind] += 1

    def fail(self, what: str) -> None:
        """A request failed in a way no fault explains."""
        self.unexpected += 1
        self.note(what)

    def fail_with(self, exc: BaseException, doing: str) -> None:
        """``fail`` with an exception's class, message and where it came from."""
        self.fail(f"{doing}: {describe(exc)}")

    def check(self, ok: bool, invariant: str) -> bool:
        """Record ``invariant`` as broken unless ``ok``."""
        if not ok:
            self.broken += 1
            if len(self.broken_what) < NOTES_KEPT:
                self.broken_what.append(invariant)
        return ok

    def note(self, what: str) -> None:
        """Keep a detail for the report (the first few of them)."""
        if len(self.notes) < NOTES_KEPT:
            self.notes.append(what)

    # -- verdict --------------------------------------------------------------
    @property
    def must_be_zero(self) -> dict[str, int]:
        """The columns that fail the run when not 0."""
        return {
            "failed unexpectedly": self.unexpected,
            "hung": self.hung,
            "leaked connections": self.leaked_connections,
            "leaked tasks": self.leaked_tasks,
            "broken invariants": self.broken,
            # What the loop's exception handler reported: an exception nobody
            # retrieved, a task destroyed while pending, a failing callback.
            "loop errors": self.figures.get("loop_errors", 0),
        }

    @property
    def ok(self) -> bool:
        """True if every must-be-0 column is 0."""
        return not any(self.must_be_zero.values())

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "key": self.key,
            "title": self.title,
            "database": self.database,
            "requests": self.requests,
            "injected_faults": self.faults,
            "failed_as_expected": self.expected,
            "failed_unexpectedly": self.unexpected,
            "hung": self.hung,
            "leaked_connections": self.leaked_connections,
            "leaked_tasks": self.leaked_tasks,
            "broken_invariants": self.broken,
            "broken_what": self.broken_what,
            "ok": self.ok,
            "expected_errors": dict(self.errors.most_common()),
            "notes": self.notes,
            "figures": self.figures,
            "memory_before_mb": round(self.memory_before_mb, 1),
            "memory_after_mb": round(self.memory_after_mb, 1),
            "max_loop_lag_ms": round(self.max_loop_lag_ms, 1),
            "seconds": round(self.seconds, 2),
        }


def describe(exc: BaseException) -> str:
    """An exception's class, message and innermost frame; a group's, each of them."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in exc.exceptions)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}{where}"


class Run:
    """What a scenario gets: its tally, the server, and task bookkeeping."""

    def __init__(self, tally: Tally, vendor: str, quick: bool, admin: Admin) -> None:
        self.tally = tally
        self.vendor = vendor
        self.quick = quick
        self.admin = admin
        self.tasks: list[asyncio.Task] = []

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """Start a task the runner keeps track of (a hang is counted, not waited for)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task

    async def bounded(self, coro: Awaitable[T], limit: float) -> T:
        """Await ``coro``; past ``limit`` seconds it is cancelled, counted hung, ``Hung`` raised."""
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await coro
        except TimeoutError:
            if deadline.expired():
                self.tally.hung += 1
                self.tally.note(f"hung: still running after {limit:g} s")
                raise Hung from None
            raise


# -- the books ---------------------------------------------------------------------------


async def _settle(until: Callable[[], Awaitable[bool]], seconds: float = SETTLE_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if await until():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)


async def balance(run: Run) -> None:
    """The books at the end of a scenario, on its loop: everything back, nothing open."""
    from tandem.db.pool import loop_pools

    tally = run.tally
    me = asyncio.current_task()

    def others() -> list[asyncio.Task]:
        return [t for t in asyncio.all_tasks() if t is not me and not t.done()]

    async def no_tasks() -> bool:
        return not others()

    # Tasks: tandem's own background work (closing a cursor) may take a moment.
    await _settle(no_tasks)
    for task in others():
        tally.leaked_tasks += 1
        tally.note(f"task left running: {task.get_name()} {task.get_coro()!r}")

    # Pools: every connection idle in its pool, nobody waiting, no pool above max_size.
    pools = loop_pools()

    async def pools_idle() -> bool:
        return all(p.idle == p.size and not p.waiting for p in pools.values())

    await _settle(pools_idle, 1.0)
    checked_out = 0
    for alias, pool in pools.items():
        out = pool.size - pool.idle
        checked_out += out
        if out:
            tally.leaked_connections += out
            tally.note(f"pool {alias!r}: {out} of its {pool.size} connections still checked out")
        tally.check(not pool.waiting, f"pool {alias!r}: {pool.waiting} tasks still waiting")
        tally.check(
            pool.size <= pool.options.max_size,
            f"pool {alias!r}: {pool.size} connections, above max_size {pool.options.max_size}",
        )
    tally.figures["pools_at_end"] = {a: {"size": p.size, "idle": p.idle} for a, p in pools.items()}

    # The server: no session beyond what the pools hold, none busy or in a transaction.
    if run.vendor == "sqlite":
        return
    held = sum(p.size for p in pools.values())
    if run.vendor == "pgbouncer":
        await _pgbouncer_agrees(run, held, checked_out)
        return
    sessions: list = []

    async def server_agrees() -> bool:
        nonlocal sessions
        sessions = await run.admin.sessions()
        return len(sessions) <= held and not any(s.busy for s in sessions)

    if not await _settle(server_agrees):
        # A session beyond what the pools hold is a leak; a busy one is, unless it
        # is a connection the pools already count as checked out.
        busy = [s for s in sessions if s.busy]
        extra = max(0, len(sessions) - held)
        tally.leaked_connections += max(extra, len(busy) - checked_out, 0)
        tally.note(
            f"server: {len(sessions)} sessions for {held} pooled connections; "
            f"busy or in a transaction: {[(s.id, s.state) for s in busy]}"
        )
    tally.figures["server_sessions_at_end"] = len(sessions)


def _pgbouncer_problems(seen: BehindPgBouncer, held: int) -> list[str]:
    """What is wrong with PgBouncer's view of the runner's database, if anything."""
    problems = []
    if len(seen.clients) > held:
        problems.append(f"{len(seen.clients)} client connections for {held} pooled connections")
    busy_clients = [c.state + (" linked" if c.linked else "") for c in seen.clients if c.busy]
    if busy_clients:
        problems.append(f"clients holding or waiting for a server connection: {busy_clients}")
    busy = [(s.id, s.state) for s in seen.servers if s.busy]
    if busy:
        problems.append(f"server sessions busy or in a transaction: {busy}")
    if len(seen.servers) > pgbouncer.POOL_SIZE:
        problems.append(f"{len(seen.servers)} server sessions, above PgBouncer's {pgbouncer.POOL_SIZE}")
    return problems


def _pgbouncer_figures(seen: BehindPgBouncer) -> dict[str, Any]:
    keys = ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_login", "maxwait")
    return {
        "clients": len(seen.clients),
        "server_sessions": len(seen.servers),
        "pool": {key: seen.pool[key] for key in keys if key in seen.pool},
    }


async def _pgbouncer_agrees(run: Run, held: int, checked_out: int) -> None:
    """The books behind PgBouncer (transaction mode), on the scenario's loop.

    PgBouncer's clients are tandem's connections: no more than the pools
    hold, and none holding a server connection or waiting for one (in
    transaction mode a client holds one only inside a transaction). The
    server's sessions are PgBouncer's: none running or idle in a
    transaction, and no more than its pool size; idle ones are its pool.
    """
    tally = run.tally
    seen = await run.admin.behind_pgbouncer()

    async def agrees() -> bool:
        nonlocal seen
        seen = await run.admin.behind_pgbouncer()
        return not _pgbouncer_problems(seen, held)

    if not await _settle(agrees):
        # As for a server: what tandem's pools already count as checked out is not counted twice.
        tally.leaked_connections += max(
            len(seen.clients) - held,
            sum(c.busy for c in seen.clients) - checked_out,
            sum(s.busy for s in seen.servers) - checked_out,
            len(seen.servers) - pgbouncer.POOL_SIZE,
            0,
        )
        tally.note(f"PgBouncer: {'; '.join(_pgbouncer_problems(seen, held))}")
    tally.figures["pgbouncer_at_end"] = _pgbouncer_figures(seen)
    tally.figures["server_sessions_at_end"] = len(seen.servers)


async def _left_after_loop(admin: Admin, vendor: str) -> tuple[int, str]:
    """Connections left once the loop closed: how many, and what they are."""
    if vendor == "sqlite":
        return 0, "no server"
    if vendor == "pgbouncer":
        # PgBouncer keeps its idle server connections (its pool): only
        # clients, or server sessions still busy, are left over.
        seen = await admin.behind_pgbouncer()
        busy = sum(s.busy for s in seen.servers)
        return len(seen.clients) + busy, f"{len(seen.clients)} PgBouncer clients, {busy} busy server sessions"
    sessions = await admin.sessions()
    return len(sessions), f"{len(sessions)} server sessions"


def worker_threads() -> list[threading.Thread]:
    """tandem's driver threads still alive (SQLite and MySQL connections, MySQL kills)."""
    return [t for t in threading.enumerate() if t.name.startswith(("tandem-db", "tandem-mysql-kill"))]


def after_loop(tally: Tally, vendor: str) -> None:
    """Sync, once the scenario's loop has closed: its pools closed every connection."""

    async def check() -> None:
        async with Admin(vendor) as admin:

            async def gone() -> bool:
                return not worker_threads() and not (await _left_after_loop(admin, vendor))[0]

            if not await _settle(gone):
                threads = worker_threads()
                left, what = await _left_after_loop(admin, vendor)
                tally.leaked_connections += max(left, len(threads))
                tally.note(f"after the loop closed: {what}, {len(threads)} worker threads still alive")

    asyncio.run(check())


def rss_mb() -> float:
    """This process's resident memory, in MB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, on other systems


class LagMonitor:
    """How late the loop runs a 10 ms timer: a blocked loop shows here."""

    def __init__(self) -> None:
        self.max_lag = 0.0
        self.task: asyncio.Task | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(0.01)
            self.max_lag = max(self.max_lag, loop.time() - started - 0.01)

    def start(self) -> asyncio.Task:
        self.task = asyncio.get_running_loop().create_task(self._watch(), name="chaos-lag-monitor")
        return self.task

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
