"""A connection pool per event loop and database alias.

Connections are only ever used by the loop that opened them, so the pool
needs no threads: waiting for a connection is awaiting a future, through the
bridge. When the loop shuts down (``asyncio.run`` returning, uvicorn stopping)
its pools close every connection they opened.

The pool is backend-neutral: a tandem backend supplies how to test a returned
connection (``reusable``), how to ping it (``ping``) and how to close it.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.utils import OperationalError

from tandem.bridge import await_
from tandem.bridge.waiters import Waiters, handed

__all__ = ["Pool", "PoolOptions", "PoolTimeout", "loop_pools", "pool_for"]


class PoolTimeout(OperationalError):  # noqa: N818 - named like psycopg_pool's
    """No pooled connection became free within ``OPTIONS["pool"]["timeout"]``."""


@dataclass(frozen=True)
class PoolOptions:
    """Validated ``DATABASES[alias]["OPTIONS"]["pool"]``."""

    min_size: int = 0  # idle connections kept open however long they idle
    max_size: int = 10  # connections open at once, idle or in use
    timeout: float = 30.0  # seconds to wait for a free connection
    max_idle: float = 600.0  # seconds an idle connection beyond min_size lives
    max_lifetime: float = 3600.0  # seconds before a connection is replaced

    @classmethod
    def from_settings(cls, alias: str, value: Any) -> PoolOptions:
        """Build from the settings value (absent/None/True: defaults) or raise."""
        where = f"DATABASES[{alias!r}]['OPTIONS']['pool']"
        if value is None or value is True:
            return cls()
        if not isinstance(value, dict):
            raise ImproperlyConfigured(f"{where} must be True or a dict, not {value!r}.")
        known = {f.name for f in fields(cls)}
        for key, item in value.items():
            if key not in known:
                raise ImproperlyConfigured(
                    f"{where} has unknown option {key!r}; valid options: {', '.join(sorted(known))}."
                )
            if isinstance(item, bool) or not isinstance(item, (int, float)) or item < 0:
                raise ImproperlyConfigured(f"{where}[{key!r}] must be a number >= 0, not {item!r}.")
        options = cls(**value)
        if options.max_size < 1 or int(options.max_size) != options.max_size:
            raise ImproperlyConfigured(f"{where}['max_size'] must be an integer >= 1.")
        if options.min_size > options.max_size or int(options.min_size) != options.min_size:
            raise ImproperlyConfigured(f"{where}['min_size'] must be an integer <= max_size.")
        return options


class Pool:
    """Connections of one alias on one event loop."""

    def __init__(
        self,
        alias: str,
        options: PoolOptions,
        *,
        reusable: Callable[[Any], bool],
        close: Callable[[Any], None],
        ping: Callable[[Any], None] | None = None,
    ) -> None:
        self.alias = alias
        self.options = options
        self._reusable = reusable
        self._close = close
        self._ping = ping
        self._idle: deque[tuple[Any, float]] = deque()  # (connection, idle since)
        self._born: dict[Any, float] = {}  # every open connection -> opened at
        self._waiters = Waiters()
        self._pending = 0  # connections being opened right now
        self.closed = False

    @property
    def size(self) -> int:
        """Connections open or being opened."""
        return len(self._born) + self._pending

    @property
    def idle(self) -> int:
        """Open connections waiting in the pool."""
        return len(self._idle)

    @property
    def has_waiters(self) -> bool:
        """True if a task may be waiting for a connection (cheap, for hot paths)."""
        return bool(self._waiters)

    @property
    def waiting(self) -> int:
        """Tasks waiting for a connection."""
        return len(self._waiters)

    def acquire(self, connect: Callable[[], Any]) -> Any:
        """Return a connection; call in the bridge. ``connect`` opens a new one."""
        deadline = time.monotonic() + self.options.timeout
        while True:
            if self.closed:
                raise OperationalError(f"tandem: the pool of database alias {self.alias!r} is closed.")
            conn = self._take_idle()
            if conn is not None:
                return conn
            if self.size < self.options.max_size:
                return self._open(connect)
            conn = self._wait_turn(deadline)
            if conn is not None:
                return conn

    def release(self, conn: Any) -> None:
        """Give a connection back; broken, busy or expired ones are closed."""
        if conn not in self._born:
            self._close(conn)
            return
        if self.closed or not self._reusable(conn) or self._expired(conn):
            self.discard(conn)
            return
        if self._waiters.hand_over(conn) is not None:
            return
        self._idle.append((conn, time.monotonic()))
        self._trim()

    def discard(self, conn: Any) -> None:
        """Close a connection for good and let a waiter open a replacement."""
        self._born.pop(conn, None)
        self._close(conn)
        self._waiters.hand_over(None)

    def forget(self, conn: Any) -> None:
        """Stop counting a connection its user closed; a waiter may open a replacement."""
        if self._born.pop(conn, None) is not None:
            self._waiters.hand_over(None)

    def close(self) -> None:
        """Close every connection this pool opened; waiters get an error."""
        self.closed = True
        for conn in list(self._born):
            self._close(conn)
        self._born.clear()
        self._idle.clear()
        while self._waiters:
            self._waiters.hand_over(None)

    def _open(self, connect: Callable[[], Any]) -> Any:
        self._pending += 1
        try:
            conn = connect()
        except BaseException:
            self._waiters.hand_over(None)
            raise
        finally:
            self._pending -= 1
        self._born[conn] = time.monotonic()
        return conn

    def _take_idle(self) -> Any:
        while self._idle:
            conn, _ = self._idle.pop()  # most recently used: warm, and lets others idle out
            if self._expired(conn) or not self._healthy(conn):
                self.discard(conn)
                continue
            return conn
        return None

    def _healthy(self, conn: Any) -> bool:
        if not self._reusable(conn):
            return False
        if self._ping is None:
            return True
        try:
            self._ping(conn)
        except Exception:
            return False
        except BaseException:
            # Cancelled mid-ping: nobody holds the connection and its state is
            # unknown. Closing it here is the only way it is not lost.
            self.discard(conn)
            raise
        return True

    def _expired(self, conn: Any) -> bool:
        born = self._born.get(conn)
        return born is None or time.monotonic() - born > self.options.max_lifetime

    def _trim(self) -> None:
        now = time.monotonic()
        while len(self._idle) > self.options.min_size and now - self._idle[0][1] > self.options.max_idle:
            conn, _ = self._idle.popleft()
            self._born.pop(conn, None)
            self._close(conn)

    def _wait_turn(self, deadline: float) -> Any:
        turn = self._waiters.join()
        timer = turn.get_loop().call_later(max(0.0, deadline - time.monotonic()), self._expire, turn)
        try:
            return await_(turn)
        except BaseException:
            # Handed a connection just as we were cancelled: do not lose it.
            if handed(turn):
                if turn.result() is not None:
                    self.release(turn.result())
                else:
                    self._waiters.hand_over(None)
            raise
        finally:
            timer.cancel()

    def _expire(self, turn: asyncio.Future) -> None:
        if not turn.done():
            turn.set_exception(
                PoolTimeout(
                    f"tandem: no connection to database alias {self.alias!r} became free "
                    f"within {self.options.timeout:g} s; all {self.options.max_size} "
                    f"connections of its pool (OPTIONS['pool']['max_size']) are in use."
                )
            )


# -- one set of pools per event loop -----------------------------------------

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Pool]] = weakref.WeakKeyDictionary()


def pool_for(alias: str, make: Callable[[], Pool]) -> Pool:
    """The running loop's pool for ``alias``, created by ``make()`` on first use."""
    loop = asyncio.get_running_loop()
    pools = _pools.get(loop)
    if pools is None:
        pools = _pools[loop] = {}
        _close_with_loop(loop, pools)
    pool = pools.get(alias)
    if pool is None:
        pool = pools[alias] = make()
    return pool


def loop_pools(loop: asyncio.AbstractEventLoop | None = None) -> dict[str, Pool]:
    """The pools of ``loop`` (default: the running loop), by alias."""
    return _pools.get(loop or asyncio.get_running_loop(), {})


def _close_all(pools: dict[str, Pool]) -> None:
    for pool in pools.values():
        pool.close()
    pools.clear()


async def _loop_sentinel(pools: dict[str, Pool]):
    # asyncio.run() (and uvicorn, asgiref, pytest-asyncio: anything that shuts
    # a loop down properly) closes the loop's async generators before closing
    # the loop; this one's finally closes the pools.
    try:
        yield
    finally:
        _close_all(pools)


def _close_with_loop(loop: asyncio.AbstractEventLoop, pools: dict[str, Pool]) -> None:
    sentinel = _loop_sentinel(pools)
    try:
        sentinel.__anext__().send(None)  # first iteration registers it with the loop
    except StopIteration:
        pass
    # A loop dropped without shutdown_asyncgens(): close on garbage collection,
    # finishing the generator by hand so the loop's finalizer never runs for it.
    weakref.finalize(loop, _finish, sentinel, pools)


def _finish(sentinel, pools: dict[str, Pool]) -> None:
    _close_all(pools)
    try:
        sentinel.aclose().send(None)
    except (StopIteration, RuntimeError):
        pass
