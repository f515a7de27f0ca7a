"""Django's cache natively on the loop: tandem's RedisCache and the built-in backends.

Against the real Redis at TANDEM_REDIS_URL (default 127.0.0.1:6379, database
9); without it these tests skip, or fail under TANDEM_REQUIRE_SERVICES=1.
"""

import asyncio
import contextvars
import os
import threading

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings

from tandem import in_bridge, native
from tests.app import views
from tests.app.models import Author

REDIS_URL = os.environ.get("TANDEM_REDIS_URL", "redis://127.0.0.1:6379/9")
PREFIX = f"tandem-tests-{os.getpid()}"


def _redis_reason() -> str | None:
    try:
        import redis
    except ImportError:
        return "redis is not installed (pip install 'django-tandem[redis]')"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        return f"Redis at {REDIS_URL} is not reachable ({exc}); set TANDEM_REDIS_URL"
    return None


def _require_redis():
    reason = _redis_reason()
    if reason and os.environ.get("TANDEM_REQUIRE_SERVICES") == "1":
        pytest.fail(f"TANDEM_REQUIRE_SERVICES=1 but {reason}")
    if reason:
        pytest.skip(reason)


def redis_caches(location=REDIS_URL, **options):
    """CACHES with tandem's RedisCache as default and Django's as "django", same keys."""
    common = {"LOCATION": location, "KEY_PREFIX": PREFIX, "OPTIONS": options}
    return {
        "default": {"BACKEND": "tandem.cache.backends.redis.RedisCache", **common},
        "django": {"BACKEND": "django.core.cache.backends.redis.RedisCache", **common},
    }


@pytest.fixture
async def redis_cache():
    """tandem's RedisCache as the default cache; its loop pool closed afterwards."""
    _require_redis()
    with override_settings(CACHES=redis_caches()):
        cache = caches["default"]
        await cache.aclear()
        yield cache
        await cache.aclose()


def in_a_thread(fn, *args, **kwargs):
    return sync_to_async(fn, thread_sensitive=False)(*args, **kwargs)


# -- tandem's RedisCache -------------------------------------------------------


def drop_blocking_pools(cache) -> None:
    """Close Django's blocking pools of the (process-wide) client: a test sees if they come back."""
    for pool in cache._cache._pools.values():
        pool.disconnect()
    cache._cache._pools.clear()


async def test_async_api_awaits_redis_on_the_loop(redis_cache):
    drop_blocking_pools(redis_cache)
    await redis_cache.aset("answer", {"value": 42}, timeout=30)
    assert await redis_cache.aget("answer") == {"value": 42}
    assert await redis_cache.aget("missing", "default") == "default"
    # The loop's redis.asyncio pool served it; Django's blocking pools were not used.
    from tandem.cache.backends.redis import _loop_clients

    assert asyncio.get_running_loop() in _loop_clients
    assert redis_cache._cache._pools == {}


async def test_every_async_method_matches_djangos_backend(redis_cache):
    """Each a* of tandem's cache against Django's RedisCache (in a thread), on twin keys."""
    django_cache = caches["django"]

    async def both(name, *args, **kwargs):
        theirs = await in_a_thread(getattr(django_cache, name), *args, version=1, **kwargs)
        ours = await getattr(redis_cache, "a" + name)(*args, version=2, **kwargs)
        assert ours == theirs, (name, args, ours, theirs)
        return ours

    assert await both("set", "k", [1, "two", 3.0]) is None
    assert await both("get", "k") == [1, "two", 3.0]
    assert await both("add", "k", "other") is False
    assert await both("add", "new", "value") is True
    assert await both("set_many", {"a": 1, "b": b"bytes"}) == []
    assert await both("get_many", ["a", "b", "nope"]) == {"a": 1, "b": b"bytes"}
    assert await both("incr", "a", 10) == 11
    assert await both("decr", "a", 2) == 9
    assert await both("has_key", "a") is True
    assert await both("touch", "a", 100) is True
    assert await both("get_or_set", "lazy", lambda: "computed") == "computed"
    assert await both("delete", "a") is True
    assert await both("delete", "a") is False
    assert await both("delete_many", ["b", "k"]) is None
    assert await both("get_many", ["a", "b", "k"]) == {}
    for name in ("incr", "decr"):
        with pytest.raises(ValueError):
            await getattr(redis_cache, "a" + name)("absent")


async def test_every_task_shares_the_loops_pool(redis_cache):
    """Django gives each task its own cache instance; they share the loop's Redis pool."""

    async def task(n):
        cache = caches["default"]  # this task's own instance, as in a request
        await cache.aset(f"shared-{n}", n)
        return cache, cache._cache.loop_client(0)

    # A fresh context each, as an ASGI server starts each request's task.
    results = await asyncio.gather(
        *(asyncio.create_task(task(n), context=contextvars.Context()) for n in range(15))
    )
    instances = {id(cache) for cache, _ in results}
    clients = {id(client) for _, client in results}
    assert len(instances) == 15 and len(clients) == 1
    assert len({id(cache._cache) for cache, _ in results}) == 1  # and one Django client
    pool = results[0][1].client.connection_pool
    assert len(pool._in_use_connections) + len(pool._available_connections) <= 15


async def test_sync_and_async_processes_share_entries(redis_cache):
    """Django's RedisCache (a sync process's) and tandem's read each other's entries."""
    django_cache = caches["django"]
    await in_a_thread(django_cache.set, "from-sync", {"n": 1})
    assert await redis_cache.aget("from-sync") == {"n": 1}
    await redis_cache.aset("from-async", 7)
    assert await in_a_thread(django_cache.get, "from-async") == 7
    assert await in_a_thread(django_cache.incr, "from-async") == 8
    assert await redis_cache.aincr_version("from-async") == 2
    assert await in_a_thread(django_cache.get, "from-async", version=2) == 8


async def test_sync_api_in_the_bridge_awaits(redis_cache):
    """Sync cache calls in native() code (templates, sync views) await on the loop."""

    drop_blocking_pools(redis_cache)

    def sync_code():
        redis_cache.set("sync-in-bridge", "yes")
        return redis_cache.get("sync-in-bridge"), in_bridge(), threading.get_ident()

    value, bridged, thread = await native(sync_code)()
    assert (value, bridged, thread) == ("yes", True, threading.get_ident())
    assert redis_cache._cache._pools == {}


async def test_sync_api_outside_the_bridge_is_djangos(redis_cache):
    drop_blocking_pools(redis_cache)
    await in_a_thread(redis_cache.set, "threaded", 1)
    assert await in_a_thread(redis_cache.get, "threaded") == 1
    assert redis_cache._cache._pools, "a thread uses Django's blocking client"


async def test_sync_use_on_the_loop_outside_the_bridge_is_named(redis_cache, caplog):
    with caplog.at_level("WARNING", logger="tandem.blocking"):
        assert redis_cache.get("anything") is None
    assert "outside the bridge" in caplog.text


async def test_redis_errors_surface_as_djangos():
    """Redis down: the same exception from tandem's a* as from Django's backend."""
    _require_redis()
    import redis

    with override_settings(CACHES=redis_caches("redis://127.0.0.1:1/0", socket_connect_timeout=1)):
        with pytest.raises(redis.ConnectionError) as theirs:
            await in_a_thread(caches["django"].get, "k")
        with pytest.raises(redis.ConnectionError) as ours:
            await caches["default"].aget("k")
        assert type(ours.value) is type(theirs.value)
        await caches["default"].aclose()


async def test_two_hundred_tasks_leave_the_loop_free(redis_cache):
    from tests.watchdog import longest_stall

    async def user(n):
        await asyncio.sleep(n / 10_000)  # arrivals spread over 20 ms, not one instant
        for i in range(5):
            await redis_cache.aset(f"task-{n}", i)
            assert await redis_cache.aget(f"task-{n}") == i

    await asyncio.gather(*(user(n) for n in range(200)))  # warm: open the pool
    stall = await longest_stall(asyncio.gather(*(user(n) for n in range(200))))
    assert stall < 0.05, f"the loop stalled for {stall * 1000:.0f} ms"


# -- Django's cache machinery on it: cache_page, fragments, cached_db sessions --

pytestmark_db = pytest.mark.django_db(transaction=True)


@pytestmark_db
@pytest.mark.parametrize("kind, sync_views", [("sync", "native"), ("sync", "threads"), ("async", "threads")])
async def test_cache_page_serves_from_redis(redis_cache, kind, sync_views):
    views.cached_view_runs.clear()
    await Author.objects.acreate(name="Ada")
    with override_settings(TANDEM_SYNC_VIEWS=sync_views):
        transport = httpx.ASGITransport(app=ASGIHandler())
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = await client.get(f"/cache/{kind}/")
            await Author.objects.acreate(name="Grace")
            second = await client.get(f"/cache/{kind}/")
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json() and first.json()["authors"] == 1
    assert views.cached_view_runs == [kind], "the second response came from the cache"
    assert "max-age=60" in second.headers["Cache-Control"]
    if kind == "sync":
        # cache_page's cache I/O runs where the view runs: awaited in the bridge
        # for a view served natively, Django's blocking client in its thread.
        assert first.json()["bridged"] is (sync_views == "native")


@pytestmark_db
async def test_template_fragment_cache(redis_cache):
    await Author.objects.acreate(name="Ada")
    transport = httpx.ASGITransport(app=ASGIHandler())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        first = await client.get("/cache/fragment/")
        await Author.objects.acreate(name="Grace")
        second = await client.get("/cache/fragment/")
    assert first.text.strip() == second.text.strip() == "Ada;"


@pytestmark_db
async def test_cached_db_sessions(redis_cache):
    from django.contrib.sessions.backends.cached_db import SessionStore

    with override_settings(SESSION_ENGINE="django.contrib.sessions.backends.cached_db"):
        session = SessionStore()
        await session.aset("cart", [1, 2])
        await session.asave()
        key = session.session_key
        assert await redis_cache.ahas_key(session.cache_key)
        assert await SessionStore(key).aget("cart") == [1, 2]
        await SessionStore(key).adelete()
        assert not await redis_cache.ahas_key(session.cache_key)


# -- the built-in backends: their a* methods run in the bridge -----------------


class RecordingLocMem(LocMemCache):
    seen: list = []

    def get(self, *args, **kwargs):
        self.seen.append((threading.get_ident(), in_bridge()))
        return super().get(*args, **kwargs)


async def test_locmem_and_filebased_run_natively(tmp_path):
    from django.core.cache.backends.filebased import FileBasedCache

    class RecordingFiles(FileBasedCache):
        seen: list = []

        def set(self, *args, **kwargs):
            self.seen.append((threading.get_ident(), in_bridge()))
            return super().set(*args, **kwargs)

    memory = RecordingLocMem("tandem-locmem", {})
    files = RecordingFiles(str(tmp_path), {})
    await memory.aset("k", 1)
    assert await memory.aget("k") == 1
    await files.aset("k", [1])
    assert await files.aget("k") == [1]
    loop_thread = threading.get_ident()
    assert memory.seen == [(loop_thread, True)] and files.seen == [(loop_thread, True)]


@pytestmark_db
async def test_database_cache_queries_natively():
    from django.core.management import call_command

    from tests import recorder

    backend = "django.core.cache.backends.db.DatabaseCache"
    config = {"default": {"BACKEND": backend, "LOCATION": "tandem_cache"}}
    with override_settings(CACHES=config):
        await in_a_thread(call_command, "createcachetable", verbosity=0)
        cache = caches["default"]
        recorder.log.clear()
        await cache.aset("k", {"v": 1})
        assert await cache.aget("k") == {"v": 1}
        assert await cache.aget_many(["k", "x"]) == {"k": {"v": 1}}
        loop_thread = threading.get_ident()
        cache_queries = [q for q in recorder.log if "tandem_cache" in q.sql]
        assert cache_queries and all(q.thread == loop_thread and q.bridged for q in cache_queries)
