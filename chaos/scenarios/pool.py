"""Scenario 4: pool exhaustion, ten times more tasks than connections.

``4a``: 50 tasks each hold a connection of a 5-connection pool inside
``aatomic`` for a while; the pool's ``timeout`` is 0.5 s. Twice: once holding
longer than the timeout (5 tasks are served, 45 wait), once holding 0.2 s (the
waiters are served in waves of 5, three waves fit in the timeout). Every
waiter that is not served must get ``tandem.db.pool.PoolTimeout``, naming the
alias and the pool's size, at the timeout ±10 % of its own wait; the ones
served must be the first in line (first come, first served); none may hang.

``4b``: 30 waiters queue behind 5 holders (5 s timeout). A third of them are
cancelled while queued, and one more just as a connection is handed to it.
The remaining ones must still be served, in the order they queued, none
timing out; afterwards the pool has all its connections idle and serves 5
new tasks at once: a cancelled waiter leaves no hole in the queue and loses
no connection.
"""

from __future__ import annotations

import asyncio
import math

from django.conf import settings

from chaos.books import Hung, Run
from chaos.scenarios.common import error_kind, touch
from tandem import aatomic, native
from tandem.db.pool import PoolTimeout, loop_pools

TASKS = 50  # 10x the pool
TOLERANCE = 0.10  # a waiter's PoolTimeout comes at the timeout ±10 %
TASK_LIMIT = 30.0  # seconds before one task counts as hung
ORDER_SLACK = 0.02  # seconds: two waiters granted in one wave may finish entering in either order


async def timeouts(run: Run) -> None:
    """``4a``: waiters beyond what the pool can serve in time get PoolTimeout at the timeout."""
    alias = "exhaust"
    size, timeout = settings.POOLS[alias]["max_size"], settings.POOLS[alias]["timeout"]
    for hold in (2 * timeout, 0.2):
        await _wave(run, alias, size, timeout, hold)


async def _wave(run: Run, alias: str, size: int, timeout: float, hold: float) -> None:
    tally = run.tally
    loop = asyncio.get_running_loop()
    waves = math.ceil(timeout / hold)  # rounds of `size` tasks served before the deadline
    served_in_time = min(TASKS, size * waves)
    tally.requests += TASKS
    tally.faults += TASKS - served_in_time  # the excess the pool cannot serve in time
    outcome: dict[int, tuple[str, float]] = {}

    async def task(i: int) -> None:
        started = loop.time()
        try:
            async with aatomic(using=alias):
                outcome[i] = ("served", loop.time() - started)
                await native(touch)(alias)
                await asyncio.sleep(hold)
        except PoolTimeout as exc:
            waited = loop.time() - started
            outcome[i] = ("timeout", waited)
            if abs(waited - timeout) > TOLERANCE * timeout:
                tally.fail(f"task {i}: PoolTimeout after {waited:.3f} s, not {timeout:g} s ±10 %")
            elif f"{alias!r}" not in str(exc) or f"all {size} connections" not in str(exc):
                tally.fail(f"task {i}: PoolTimeout without the alias and size: {exc}")
            else:
                tally.expect(error_kind(exc))

    tasks = [run.spawn(run.bounded(task(i), TASK_LIMIT), name=f"exhaust-{i}") for i in range(TASKS)]
    for i, result in enumerate(await asyncio.gather(*tasks, return_exceptions=True)):
        if isinstance(result, BaseException) and not isinstance(result, Hung):
            tally.fail_with(result, f"task {i}")

    served = sorted(i for i, (what, _) in outcome.items() if what == "served")
    timed_out = [waited for what, waited in outcome.values() if what == "timeout"]
    tally.check(
        served == list(range(len(served))),
        f"hold {hold:g} s: the tasks served are not the first in line: {served}",
    )
    tally.check(
        len(served) == served_in_time,
        f"hold {hold:g} s: {len(served)} tasks served, expected {served_in_time} ({waves} waves of {size})",
    )
    late = [round(waited, 3) for what, waited in outcome.values() if what == "served" and waited > timeout]
    tally.check(not late, f"hold {hold:g} s: tasks served after the timeout: {late}")
    pool = loop_pools()[alias]
    tally.check(pool.size <= size, f"pool {alias!r} grew to {pool.size} connections")
    tally.figures[f"hold_{hold:g}s"] = {
        "served": len(served),
        "timed_out": len(timed_out),
        "timeout_after_min_s": round(min(timed_out), 3) if timed_out else None,
        "timeout_after_max_s": round(max(timed_out), 3) if timed_out else None,
    }

    # The pool serves the next task at once.
    started = loop.time()
    async with aatomic(using=alias):
        waited = loop.time() - started
        await native(touch)(alias)
    tally.requests += 1
    tally.check(waited < 0.1, f"hold {hold:g} s: the next task waited {waited:.3f} s for a connection")


async def cancelled_waiters(run: Run) -> None:
    """``4b``: cancelling queued waiters leaves no hole: the others are served in order."""
    tally = run.tally
    alias = "queue"
    size = settings.POOLS[alias]["max_size"]
    waiters_count, hold = 30, 0.06
    cancelled = set(range(1, waiters_count, 3))  # 10 waiters, cancelled while queued
    raced = 0  # cancelled just as a connection is handed to it
    loop = asyncio.get_running_loop()
    ready = [asyncio.Event() for _ in range(size)]
    release = [asyncio.Event() for _ in range(size)]
    granted: dict[int, float] = {}
    waiters: list[asyncio.Task] = []

    async def holder(i: int) -> None:
        async with aatomic(using=alias):
            await native(touch)(alias)
            ready[i].set()
            await release[i].wait()
        if i == 0:
            # Leaving the block handed our connection to the first waiter in
            # line; cancel it before it runs: it must pass the connection on.
            waiters[raced].cancel()

    async def waiter(i: int) -> None:
        async with aatomic(using=alias):
            granted[i] = loop.time()
            await native(touch)(alias)
            await asyncio.sleep(hold)

    holders = [run.spawn(holder(i), name=f"holder-{i}") for i in range(size)]
    await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready)), TASK_LIMIT)
    pool = loop_pools()[alias]
    for i in range(waiters_count):
        waiters.append(run.spawn(run.bounded(waiter(i), TASK_LIMIT), name=f"waiter-{i}"))
        await asyncio.sleep(0)  # it queues now: the queue's order is i's
    tally.requests += size + waiters_count
    tally.check(pool.waiting == waiters_count, f"{pool.waiting} waiters queued, not {waiters_count}")

    for i in sorted(cancelled):
        waiters[i].cancel()
    for i in sorted(cancelled):
        await _expect_cancelled(tally, waiters[i], f"waiter {i} cancelled while queued")
    queued = waiters_count - len(cancelled)
    tally.check(pool.waiting == queued, f"{pool.waiting} waiters still queued after cancelling, not {queued}")

    release[0].set()  # holder 0 leaves, hands its connection to waiter 0, and cancels it
    await holders[0]
    await _expect_cancelled(tally, waiters[raced], f"waiter {raced} cancelled as it was handed a connection")
    tally.faults += len(cancelled) + 1
    await asyncio.sleep(0.01)
    first = min(set(range(waiters_count)) - cancelled - {raced})
    tally.check(
        list(granted) == [first] and pool.waiting == queued - 2,
        f"the connection waiter {raced} was handed did not go to waiter {first}: granted {list(granted)}",
    )

    for event in release[1:]:
        event.set()
    rest = [i for i in range(waiters_count) if i not in cancelled and i != raced]
    for i, result in zip(
        rest, await asyncio.gather(*(waiters[i] for i in rest), return_exceptions=True), strict=True
    ):
        if isinstance(result, BaseException) and not isinstance(result, Hung):
            tally.fail_with(result, f"waiter {i}")
    await asyncio.gather(*holders[1:])

    # First come, first served: a waiter never enters after one that queued later.
    order = sorted(granted, key=granted.get)
    overtaken = [(i, j) for i in granted for j in granted if i < j and granted[i] > granted[j] + ORDER_SLACK]
    tally.check(not overtaken, f"waiters served out of order: {order}")
    tally.check(sorted(granted) == rest, f"waiters served: {sorted(granted)}, expected {rest}")
    tally.figures["served_in_order"] = not overtaken

    # No hole: every connection is back and idle, and all of them serve at once.
    tally.check(
        pool.idle == pool.size <= size,
        f"after the queue drained: pool size {pool.size}, idle {pool.idle} (max {size})",
    )
    waits: list[float] = []

    async def fresh() -> None:
        started = loop.time()
        async with aatomic(using=alias):
            waits.append(loop.time() - started)
            await native(touch)(alias)
            await asyncio.sleep(hold)

    results = await asyncio.gather(*(fresh() for _ in range(size)), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            tally.fail_with(result, "a new task after the queue drained")
    tally.requests += size
    tally.check(
        all(w < 0.1 for w in waits) and pool.size <= size,
        f"{size} new tasks waited {[round(w, 3) for w in waits]} s (pool size {pool.size})",
    )
    tally.figures["new_tasks_max_wait_s"] = round(max(waits), 4) if waits else None


async def _expect_cancelled(tally, task: asyncio.Task, what: str) -> None:
    try:
        await task
    except asyncio.CancelledError:
        if asyncio.current_task().cancelling():  # we are being cancelled ourselves: pass it on
            raise
        tally.expect("asyncio.CancelledError (cancelled while waiting for a connection)")
    except BaseException as exc:
        tally.fail_with(exc, what)
    else:
        tally.fail(f"{what}: finished instead of raising CancelledError")
