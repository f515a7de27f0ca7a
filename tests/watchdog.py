"""How long the event loop was held by one callback while some work ran."""

import asyncio
import gc
import os
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

    Nor is the time the operating system kept the loop's thread waiting
    for a core while other processes ran (a busy 2-core CI machine): on
    Linux, the thread's own run-queue wait (``/proc/thread-self/schedstat``)
    during a callback is taken off its time. What remains is the time the
    callback ran or blocked in a call of its own: what holds the loop.
    """

    def __init__(self) -> None:
        self.longest = 0.0
        self._run = asyncio.events.Handle._run

    async def __aenter__(self) -> "LoopWatch":
        run = self._run
        waited = self._run_queue_wait()

        def timed_run(handle: asyncio.Handle) -> None:
            started, queued = time.perf_counter(), waited()
            try:
                run(handle)
            finally:
                held = time.perf_counter() - started - (waited() - queued)
                self.longest = max(self.longest, held)

        gc.collect()
        gc.disable()
        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        asyncio.events.Handle._run = self._run  # type: ignore[method-assign]
        gc.enable()

    def _run_queue_wait(self):
        """A function: seconds this (the loop's) thread has waited for a core so far; 0 where unknown."""
        fd = _schedstat.get(threading.get_ident())
        if fd is None:
            try:  # kept open: a callback still running as the watch ends reads it once more
                fd = _schedstat[threading.get_ident()] = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            except OSError:
                return lambda: 0.0

        def waited() -> float:
            try:
                return int(os.pread(fd, 128, 0).split()[1]) / 1e9
            except OSError:  # the thread that opened it has ended
                return 0.0

        return waited


# thread id -> an open /proc/thread-self/schedstat of that thread
_schedstat: dict[int, int] = {}


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
