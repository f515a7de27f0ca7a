"""How long the event loop was held by one callback while some work ran."""

import asyncio
import gc
import time
from collections.abc import Awaitable


async def longest_stall(work: Awaitable) -> float:
    """Run ``work``; return the longest time (seconds) one loop callback held the loop.

    That is what "the loop stays free" means: no single step (a task step, a
    bridged unit's slice, a driver callback) blocks every other task. The
    gap between two turns of a ticker would also count a turn that runs
    two hundred ready tasks one after the other, each in well under a
    millisecond, which blocks nobody for long; on a loaded 2-core machine,
    under coverage, such a turn took ~100 ms and failed these tests at
    random. A full garbage collection of a long test process's heap can
    itself pause the loop for tens of ms; collections are off meanwhile, as
    that is not what the tests measure.
    """
    longest = [0.0]
    run = asyncio.events.Handle._run

    def timed_run(handle: asyncio.Handle) -> None:
        started = time.perf_counter()
        try:
            run(handle)
        finally:
            longest[0] = max(longest[0], time.perf_counter() - started)

    gc.collect()
    gc.disable()
    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
    try:
        await work
    finally:
        asyncio.events.Handle._run = run  # type: ignore[method-assign]
        gc.enable()
    return longest[0]
