"""A drop-in for Django's ``RedisCache`` whose I/O is awaited on the loop.

Django's ``RedisCacheClient`` holds the cache's protocol: how a value is
serialised, which Redis command each cache operation is, which server a
read or a write goes to. tandem keeps all of it and changes only how a
command waits. Inside the bridge (``tandem.native()``, a template rendered by
``arender``, a sync view or middleware served natively), ``get_client()``
returns the same commands backed by ``redis.asyncio`` and each one is
awaited with ``await_()``; anywhere else it is Django's blocking client, as
stock. The ``a*`` methods run the sync ones in the bridge, so both APIs share
one implementation and every entry is byte-for-byte what Django writes: a
sync process and an async one read each other's keys.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import weakref
from collections.abc import Awaitable
from functools import cached_property
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.client
from django.core.cache.backends import redis as django_redis

from tandem.bridge import await_, call_native, in_bridge

__all__ = ["RedisCache", "RedisCacheClient"]

blocking_logger = logging.getLogger("tandem.blocking")


# How long a command waits for a free connection of a full pool, as
# redis.asyncio's BlockingConnectionPool (whose Condition-based checkout costs
# ~25 µs per command, a quarter of a GET on loopback: hence a semaphore).
POOL_WAIT_SECONDS = 20.0


class _LoopClient:
    """A loop's ``redis.asyncio`` client for one server, at most ``size`` commands at once."""

    __slots__ = ("client", "slots")

    def __init__(self, url: str, size: int, options: dict[str, Any]) -> None:
        pool = redis.asyncio.ConnectionPool.from_url(url, max_connections=size, **options)
        self.client = redis.asyncio.Redis(connection_pool=pool)
        self.slots = asyncio.Semaphore(size)

    async def run(self, command: Awaitable[Any]) -> Any:
        """Await ``command`` holding a slot: a full pool makes it wait, not fail."""
        if self.slots.locked():
            try:
                async with asyncio.timeout(POOL_WAIT_SECONDS):
                    await self.slots.acquire()
            except TimeoutError:
                command.close()  # type: ignore[attr-defined]  # redis.asyncio's commands are coroutines
                raise redis.ConnectionError("No connection available.") from None
        else:
            await self.slots.acquire()
        try:
            return await command
        finally:
            self.slots.release()


class _Awaiting:
    """A ``redis.asyncio`` client or pipeline whose calls block the bridge, not the loop.

    Each command returns a coroutine: it is awaited on the loop with
    ``await_()`` and the sync caller gets its result. ``pipeline()`` returns a
    pipeline whose buffered commands return the pipeline, wrapped alike.
    """

    __slots__ = ("_loop_client", "_target")

    def __init__(self, target: Any, loop_client: _LoopClient) -> None:
        self._target = target
        self._loop_client = loop_client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            # Before the awaitable test: a redis.asyncio pipeline is awaitable too.
            if isinstance(result, _ASYNC_CLIENTS):
                return _Awaiting(result, self._loop_client)
            if inspect.isawaitable(result):
                return await_(self._loop_client.run(result))
            return result

        return call


_ASYNC_CLIENTS = (redis.asyncio.Redis, redis.asyncio.client.Pipeline)


class RedisCacheClient(django_redis.RedisCacheClient):
    """Django's client; in the bridge its commands go through a pool of the running loop.

    A ``redis.asyncio`` connection belongs to the loop that opened it, so each
    loop gets its own pools (one per server, as Django's), dropped with the
    loop. A loop's pool holds at most ``OPTIONS["max_connections"]`` (default
    100) and a task that finds them all busy waits for one (up to
    ``POOL_WAIT_SECONDS``, 20 s, then ``redis.ConnectionError`` as
    redis-py's blocking pool raises) instead of failing: hundreds of tasks
    share a few connections. ``pool_class`` and ``parser_class``
    configure the blocking client only: the loop's pools use
    ``redis.asyncio``'s (hiredis when it is installed); every other option
    applies to both.
    """

    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        # Django makes a cache instance per thread and per asyncio task (its
        # caches handler is context-local), so loop clients are shared by
        # configuration, not kept per instance: every task of a loop that uses
        # the same LOCATION and OPTIONS uses the same pools.
        self._configuration = repr((servers, sorted((key, repr(value)) for key, value in options.items())))
        # The loop of this instance's last call and its clients: a
        # WeakKeyDictionary lookup costs ~2 µs, and most calls skip it.
        self._last: tuple[asyncio.AbstractEventLoop | None, dict[int, _LoopClient]] = (None, {})

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        """The client for ``key``: awaiting on the loop in the bridge, Django's elsewhere."""
        if in_bridge():
            loop_client = self.loop_client(self._get_connection_pool_index(write))
            return _Awaiting(loop_client.client, loop_client)
        if _loop_is_running():
            blocking_logger.warning(
                "The Redis cache was used synchronously from async code outside the bridge: "
                "the event loop is blocked until Redis answers. Use the cache's a* methods "
                "(await cache.aget(...)) or run the code with tandem.native()."
            )
        return super().get_client(key, write=write)

    def _clients_of(self, loop: asyncio.AbstractEventLoop) -> dict[int, _LoopClient]:
        last_loop, clients = self._last
        if loop is not last_loop:
            clients = _loop_clients.setdefault(loop, {}).setdefault(self._configuration, {})
            self._last = (loop, clients)
        return clients

    def loop_client(self, index: int) -> _LoopClient:
        """The running loop's client for server ``index``."""
        clients = self._clients_of(asyncio.get_running_loop())
        client = clients.get(index)
        if client is None:
            options = {k: v for k, v in self._pool_options.items() if k != "parser_class"}
            size = options.pop("max_connections", None) or 100
            client = clients[index] = _LoopClient(self._servers[index], size, options)
        return client

    async def aclose_loop_clients(self) -> None:
        """Close the running loop's pools of this configuration; they reopen on next use."""
        clients = self._clients_of(asyncio.get_running_loop())
        closing = list(clients.values())
        clients.clear()  # in place: every instance sharing it sees it empty
        for loop_client in closing:
            await loop_client.client.aclose()


_clients: dict[str, RedisCacheClient] = {}
_clients_lock = threading.Lock()


def _shared_client(klass: type[RedisCacheClient], servers: list[str], options: dict[str, Any]) -> Any:
    """The one client of this class, servers and options in the process."""
    key = repr((klass, servers, sorted((name, repr(value)) for name, value in options.items())))
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = klass(servers, **options)
    return client


# loop -> configuration -> server index -> client. Dropped with the loop.
_loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, dict[int, _LoopClient]]] = (
    weakref.WeakKeyDictionary()
)


def _loop_is_running() -> bool:
    return asyncio._get_running_loop() is not None


def _runs_natively(name: str) -> Any:
    """``RedisCache.a<name>``: the sync method, run in the bridge."""

    async def method(self: RedisCache, *args: Any, **kwargs: Any) -> Any:
        return await call_native(getattr(self, name), *args, **kwargs)

    method.__name__ = method.__qualname__ = f"a{name}"
    method.__doc__ = f"Async ``{name}()``: Redis I/O awaited on the loop, no thread."
    return method


class RedisCache(django_redis.RedisCache):
    """Django's ``RedisCache`` (same ``LOCATION``, ``OPTIONS``, keys and values), native on the loop.

    ``await cache.aget(...)`` and the other ``a*`` methods await Redis on the
    running loop; the sync methods do too when called in the bridge, and block
    as Django's do anywhere else.
    """

    # Its sync methods may run in the bridge: their I/O awaits (tandem.cache.routing).
    tandem_native = True

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient

    @cached_property
    def _cache(self) -> RedisCacheClient:
        # Django builds a cache instance per thread and per asyncio task, so
        # per request, and each would build its client: on Django 6.1 that
        # reads redis-py's package metadata (~0.4 ms, 6 % of a page's CPU).
        # The client holds only thread-safe pools: one per configuration.
        return _shared_client(self._class, self._servers, self._options)

    aadd = _runs_natively("add")
    aget = _runs_natively("get")
    aset = _runs_natively("set")
    atouch = _runs_natively("touch")
    adelete = _runs_natively("delete")
    aget_many = _runs_natively("get_many")
    aget_or_set = _runs_natively("get_or_set")
    ahas_key = _runs_natively("has_key")
    aincr = _runs_natively("incr")
    adecr = _runs_natively("decr")
    aset_many = _runs_natively("set_many")
    adelete_many = _runs_natively("delete_many")
    aclear = _runs_natively("clear")
    aincr_version = _runs_natively("incr_version")
    adecr_version = _runs_natively("decr_version")

    async def aclose(self, **kwargs: Any) -> None:
        """Close this loop's Redis connections (call it when the loop ends, e.g. at shutdown).

        Django calls the sync ``close()`` after every request; like Django's
        Redis cache, that keeps the pools open, so connections are reused.
        """
        await self._cache.aclose_loop_clients()
