"""Tasks waiting to be handed something: a lock's turn, a pooled connection.

One shape for every hand-off in tandem (the shape of psycopg_pool's
waiting client): a waiter is a future in a queue; whoever has something to
hand over gives it to the oldest waiter still waiting, skipping those whose
wait ended meanwhile (cancelled, timed out), and learns whether anybody
took it. A waiter whose wait ends just as it is handed something must give
it back (``handed()`` tells it so): nothing handed over is ever lost.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, NamedTuple

__all__ = ["Waiter", "Waiters", "handed"]


class Waiter(NamedTuple):
    """One waiting client: who waits (``owner``, any value) and its ``turn``."""

    owner: Any
    turn: asyncio.Future


class Waiters:
    """Waiters served in arrival order."""

    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: deque[Waiter] = deque()

    def __bool__(self) -> bool:
        """True if somebody may be waiting (cheap: ended waits may still be queued)."""
        return bool(self._queue)

    def __len__(self) -> int:
        """How many are waiting now."""
        return sum(not waiter.turn.done() for waiter in self._queue)

    def join(self, owner: Any = None) -> asyncio.Future:
        """Queue up on the running loop; await the returned future for what is handed over."""
        turn = asyncio.get_running_loop().create_future()
        self._queue.append(Waiter(owner, turn))
        return turn

    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the oldest waiter waits on, if any (to hand over from another thread)."""
        return self._queue[0].turn.get_loop() if self._queue else None

    def hand_over(self, value: Any = None) -> Waiter | None:
        """Give ``value`` to the oldest waiter still waiting; None if there is none."""
        while self._queue:
            waiter = self._queue.popleft()
            if not waiter.turn.done():
                waiter.turn.set_result(value)
                return waiter
        return None


def handed(turn: asyncio.Future) -> bool:
    """True if ``turn`` was handed a value: a waiter that stops waiting must give it back."""
    return turn.done() and not turn.cancelled() and turn.exception() is None
