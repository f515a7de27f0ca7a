"""How long the event loop was held by one callback while some work ran."""

import asyncio
import gc
import threading
import time
from collections.abc import Awaitable


class LoopWatch:
    """``async with LoopWatch() as watch:``; then ``watch.longest``, in seconds.

    The longest time one loop callback held the loop inside the block. That
    is what "the loop stays free" means: no single step (a task step, a
    bridged unit's slice, a driver callback) blocks every other task. The
    gap between two turns of a ticker would also count a turn that runs
    two hundred ready tasks one after the other, each in well under a
    millisecond, which blocks nobody for long; on a loaded 2-core machine,
    under coverage, such a turn took ~100 ms and failed these tests at
    random. A full garbage collection of a long test process's heap can
    itself pause the loop for tens of ms (57 ms seen in CI's MariaDB run);
    collections are off inside the block, as that is not what the tests
    measure.
    """

    def __init__(self) -> None:
        self.longest = 0.0
        self._run = asyncio.events.Handle._run

    async def __aenter__(self) -> "LoopWatch":
        run = self._run

        def timed_run(handle: asyncio.Handle) -> None:
            started = time.perf_counter()
            try:
                run(handle)
            finally:
                self.longest = max(self.longest, time.perf_counter() - started)

        gc.collect()
        gc.disable()
        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        asyncio.events.Handle._run = self._run  # type: ignore[method-assign]
        gc.enable()


async def longest_stall(work: Awaitable) -> float:
    """Run ``work``; return the longest time (seconds) one loop callback held the loop."""
    async with LoopWatch() as watch:
        await work
    return watch.longest


def block(seconds: float) -> None:
    """Block the calling thread for ``seconds``: a wait no bridge turns into an await.

    A lock with a timeout, as C code waits: ``time.sleep`` would not do, since
    in the bridge it waits on the loop (``tandem.bridge.cooperative``).
    """
    threading.Event().wait(seconds)
