"""Work that must reach its outcome even if its task is cancelled meanwhile.

``with settling(grace):`` around sync code in the bridge holds back a
cancellation of the task from what that code awaits (a COMMIT in flight),
for ``grace`` seconds at most. ``tandem.bridge.greenlets.await_`` asks
``current_settling()`` on every wait.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

__all__ = ["Settling", "current_settling", "settling"]

R = TypeVar("R")


class Settling:
    """Work that must reach its outcome even if its task is cancelled meanwhile.

    A COMMIT in flight is the example: if the task were cancelled while it
    waits for the server's answer, the data could be committed while the
    caller is told it was not, and its ``on_commit`` callbacks dropped.
    Inside ``with settling(grace) as settle:``, a cancellation of the task
    is held back: what the sync code awaits runs on, ``settle.cancelled``
    records that a cancellation came, and the caller re-raises it once the
    work is done. Held back for ``grace`` seconds at most: after that the
    awaited I/O is cancelled as it would have been at once.
    """

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.cancelled = False
        self._deadline: float | None = None
        self._gave_up = False

    async def outlast_cancellation(self, awaitable: Awaitable[R]) -> R:
        """Await ``awaitable`` to its end, holding back the task's cancellation.

        A coroutine is stepped here, in the awaiting task, rather than
        wrapped in a task of its own (which would cost a task and two loop
        turns per wait, on every COMMIT): each future it waits for is
        awaited through a waiter of ours, so a cancellation cancels the
        waiter, never the work.
        """
        if not inspect.iscoroutine(awaitable):
            future = asyncio.ensure_future(awaitable)
            if not await self._until_done(future):
                future.cancel()  # the grace is over: as an unheld cancellation would
                await self._until_done(future)
            return future.result()
        coro = awaitable
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as stop:
                return stop.value
            value = error = None
            if yielded is None:  # a bare yield (sleep(0)): one loop turn
                yielded = asyncio.get_running_loop().create_future()
                yielded.get_loop().call_soon(_wake, yielded)
            yielded._asyncio_future_blocking = False
            if not await self._until_done(yielded):
                yielded.cancel()  # the grace is over: what an unheld cancellation does
                error = asyncio.CancelledError()
                continue
            try:
                value = yielded.result()
            except BaseException as exc:  # handed to the coroutine, as a task would
                error = exc

    async def _until_done(self, future: asyncio.Future) -> bool:
        """Wait until ``future`` is done; False if the grace ran out first."""
        loop = future.get_loop()
        while not future.done():
            waiter = loop.create_future()
            wake = functools.partial(_wake, waiter)
            future.add_done_callback(wake)
            timer = None
            if self._deadline is not None and not self._gave_up:
                timer = loop.call_at(self._deadline, _wake, waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                self.cancelled = True
                if self._deadline is None:
                    self._deadline = loop.time() + self.grace
            finally:
                future.remove_done_callback(wake)
                if timer is not None:
                    timer.cancel()
            if not future.done() and not self._gave_up and self._deadline is not None:
                if loop.time() >= self._deadline:
                    self._gave_up = True
                    return False
        return True


def _wake(waiter: asyncio.Future, *_: Any) -> None:
    if not waiter.done():
        waiter.set_result(None)


_settling: ContextVar[Settling | None] = ContextVar("tandem_settling", default=None)


def current_settling() -> Settling | None:
    """The ``Settling`` of the innermost ``with settling()`` around the caller, if any."""
    return _settling.get()


@contextmanager
def settling(grace: float) -> Iterator[Settling]:
    """Hold back the task's cancellation from what the bridge awaits in this block."""
    settle = Settling(grace)
    token = _settling.set(settle)
    try:
        yield settle
    finally:
        _settling.reset(token)
