"""Which ``sync_to_async`` calls of Django's cache backends run natively.

``BaseCache``'s ``a*`` methods wrap the sync ones in ``sync_to_async``: a
thread hop per call. For the backends whose I/O tandem can see or that do
none worth a thread, the sync method runs in the bridge instead:

* ``LocMemCache`` and ``DummyCache``: a dict and a lock, no I/O at all.
* ``FileBasedCache``: small reads and writes of local files. They run on the
  loop; the blocking watch (``TANDEM_BLOCKING_WARNING_MS``) names any that
  stalls it (a slow network filesystem: keep such a cache in a thread by
  subclassing it, see docs/howto/cache.md).
* ``DatabaseCache``: its queries go to a tandem alias and are awaited.
* tandem's ``RedisCache``, and any backend class that sets
  ``tandem_native = True`` (a promise that its sync methods' I/O awaits in
  the bridge): their commands are awaited on the loop.

Anything else (Django's own Redis and memcached backends, a third-party
backend) does blocking network I/O tandem cannot see and keeps its thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.db import router

from tandem.bridge.placing import sync_to_async_router
from tandem.db.scope import is_tandem_alias

__all__ = ["cache_sync_to_async", "runs_natively"]


@functools.cache
def _native_class(klass: type) -> bool | None:
    """True: always native; False: never; None: a DatabaseCache, native on a tandem alias."""
    from django.core.cache.backends.db import DatabaseCache
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.filebased import FileBasedCache
    from django.core.cache.backends.locmem import LocMemCache

    if issubclass(klass, DatabaseCache):
        return None
    return getattr(klass, "tandem_native", False) or issubclass(
        klass, (LocMemCache, DummyCache, FileBasedCache)
    )


def runs_natively(cache: Any) -> bool:
    """Whether ``cache``'s ``a*`` methods run its sync methods in the bridge."""
    native = _native_class(type(cache))  # type: ignore[arg-type]  # mypy: a class is Hashable
    if native is None:
        return is_tandem_alias(router.db_for_write(cache.cache_model_class))
    return native


def _place(func: Callable, thread_sensitive: bool, executor: Any) -> bool:
    """Natively for a method of a backend tandem can run on the loop."""
    owner = getattr(func, "__self__", None)
    return owner is not None and runs_natively(owner)


cache_sync_to_async = sync_to_async_router(
    _place, "``sync_to_async`` for ``BaseCache``: natively for backends tandem can run on the loop."
)
