"""A lock that bridge greenlets wait on by awaiting, and threads by blocking.

psycopg guards each connection with a ``threading.Lock``. If two greenlets on
the loop thread contended for it, the second would block the whole loop and
the first could never run again to release it. ``BridgeLock`` keeps the same
mutual exclusion but a greenlet that finds it taken awaits its turn instead.
"""

from __future__ import annotations

import asyncio
import threading

from tandem.bridge.greenlets import await_, in_bridge
from tandem.bridge.waiters import Waiters, handed

__all__ = ["BridgeLock", "TaskLock"]


class BridgeLock:
    """Drop-in replacement for ``threading.Lock`` that is safe in the bridge."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters = Waiters()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock; in the bridge, await it rather than block the loop."""
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        if not in_bridge():
            return self._lock.acquire(True, timeout)
        while not self._lock.acquire(False):
            await_(self._waiters.join())
        return True

    def release(self) -> None:
        """Release the lock and wake the next greenlet waiting for it."""
        self._lock.release()
        loop = self._waiters.loop()
        if loop is None:
            return
        if asyncio._get_running_loop() is loop:
            self._waiters.hand_over()  # no extra loop turn, no self-pipe write
        else:
            loop.call_soon_threadsafe(self._waiters.hand_over)

    def locked(self) -> bool:
        """Return True if the lock is held."""
        return self._lock.locked()

    __enter__ = acquire

    def __exit__(self, *exc_info) -> None:
        self.release()


class TaskLock:
    """Mutual exclusion between asyncio tasks, re-entrant for the holding task.

    Serialises the units of work of tasks that share one connection (the tasks
    of one transaction, or of one test). Ownership passes straight to the
    next waiter on release, in arrival order.
    """

    def __init__(self) -> None:
        self._holder: asyncio.Task | None = None
        self._depth = 0
        self._waiters = Waiters()

    def try_acquire(self, task: asyncio.Task) -> bool:
        """Take the lock for ``task`` now if it is free or already ``task``'s; else False."""
        if self._holder is task:
            self._depth += 1
            return True
        if self._holder is None and not self._waiters:
            self._holder, self._depth = task, 1
            return True
        return False

    async def acquire(self, task: asyncio.Task) -> None:
        """Wait until ``task`` holds the lock."""
        if self._holder is task:
            self._depth += 1
            return
        if self._holder is None:
            self._holder, self._depth = task, 1
            return
        turn = self._waiters.join(task)
        try:
            await turn
        except asyncio.CancelledError:
            if handed(turn):  # handed over as we were cancelled
                self.release(task)
            raise

    def release(self, task: asyncio.Task) -> None:
        """Release one level of ``task``'s hold; the last one passes the lock on."""
        if self._holder is not task:
            raise RuntimeError("TaskLock released by a task that does not hold it")
        self._depth -= 1
        if self._depth:
            return
        self._holder = None
        served = self._waiters.hand_over()
        if served is not None:
            self._holder, self._depth = served.owner, 1
