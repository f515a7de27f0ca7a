"""How a blocking call of sync code in the bridge waits: on the loop, for its socket.

The replacements in ``sockets`` decide *what* to do (try the operation
without blocking); this module is *how they wait* when it would block: the
bridge greenlet registers the socket with the loop (``add_reader`` /
``add_writer``) and switches out with ``await_()``; other tasks run until
the socket is ready or the socket's timeout passes.

A wait that is cancelled (the request's client went away, a timeout
around the view) closes the socket: the exchange it was part of cannot be
resumed, and a socket half-way through a protocol must not be reused.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tandem import conf
from tandem.bridge.greenlets import await_, in_bridge

__all__ = ["TIMED_OUT", "Deadline", "cooperates", "nonblocking", "wait"]

# The message of the timeout a blocking socket raises (socket.timeout is TimeoutError).
TIMED_OUT = "timed out"


def cooperates(sock: socket.socket) -> bool:
    """True if a call on ``sock`` should wait on the loop rather than block it.

    In a bridge greenlet only, for a socket its caller has not made
    non-blocking (a non-blocking socket's caller handles ``BlockingIOError``
    itself), while ``TANDEM_COOPERATIVE_IO`` is on.
    """
    return in_bridge() and sock.gettimeout() != 0.0 and conf.cooperative_io()


class Deadline:
    """When a blocking call with the socket's timeout would give up (None: never)."""

    __slots__ = ("at",)

    def __init__(self, timeout: float | None) -> None:
        self.at = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left; raises ``TimeoutError("timed out")`` once it has passed."""
        if self.at is None:
            return None
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError(TIMED_OUT)
        return left


@contextmanager
def nonblocking(sock: socket.socket) -> Iterator[Deadline]:
    """Make ``sock`` non-blocking for the block; yields the deadline of its own timeout.

    The caller's timeout is restored afterwards (unless the socket was
    closed meanwhile).
    """
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        yield Deadline(timeout)
    finally:
        if sock.fileno() != -1:
            sock.settimeout(timeout)


def wait(sock: Any, writing: bool, deadline: Deadline) -> None:
    """Wait on the loop until ``sock`` is ready to read (or write), or the deadline passes."""
    remaining = deadline.remaining()
    loop = asyncio.get_running_loop()
    fd = sock.fileno()
    ready = loop.create_future()
    watch, unwatch = (
        (loop.add_writer, loop.remove_writer) if writing else (loop.add_reader, loop.remove_reader)
    )
    watch(fd, _wake, ready, None)
    timer = None if remaining is None else loop.call_later(remaining, _wake, ready, TIMED_OUT)
    try:
        try:
            timed_out = await_(ready)
        finally:
            unwatch(fd)
            if timer is not None:
                timer.cancel()
    except asyncio.CancelledError:
        sock.close()  # mid-exchange: the socket can never be used again
        raise
    if timed_out:
        raise TimeoutError(TIMED_OUT)


def _wake(ready: asyncio.Future, timed_out: str | None) -> None:
    if not ready.done():
        ready.set_result(timed_out)
