"""Where Django's async ORM calls run: natively for tandem aliases, in threads for the rest.

Django's ``a*`` methods (``QuerySet.aget``, ``Model.asave``, related managers,
``aprefetch_related_objects``, ``AsyncPaginator``, ...) all end in
``sync_to_async(sync_method)``. We replace that name, in the modules that
use it (listed in ``tandem.patches``), by ``routed_sync_to_async``: same signature, but when the call is for
a tandem alias it runs the sync method with ``native()`` on the loop thread.
Calls for stock aliases keep Django's thread behaviour.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from asgiref import sync as asgiref_sync
from django.db import DEFAULT_DB_ALIAS, router
from django.db.models import Model, QuerySet
from django.db.models.manager import BaseManager

from tandem.bridge import await_, call_native, in_bridge
from tandem.bridge.placing import Place, sync_to_async_router
from tandem.db.scope import (
    every_alias_tandem,
    in_any_block,
    is_tandem_alias,
    lend_connections,
    test_connections,
)

__all__ = ["block_aware_sync_to_async_call", "bridged_async_to_sync_call", "place", "routed_sync_to_async"]

_stock_sync_to_async = asgiref_sync.sync_to_async
_stock_sync_to_async_call = asgiref_sync.SyncToAsync.__call__
_stock_async_to_sync_call = asgiref_sync.AsyncToSync.__call__


# The names of the sync methods behind Django's a* methods that write: their
# alias is the router's write alias (QuerySet._for_write is only set inside
# them, so asking the queryset's ``db`` beforehand would give the read alias).
_WRITES = frozenset(
    {
        "create",
        "get_or_create",
        "update_or_create",
        "bulk_create",
        "bulk_update",
        "update",
        "delete",
        "save",
        "add",
        "remove",
        "clear",
        "set",
    }
)


def _alias_of(func: Callable, args: tuple, kwargs: dict) -> str:
    """The database alias a wrapped ORM call will use, as Django's own code picks it.

    An explicit ``using`` first; else, as Django does inside the call: the
    router's write alias for a method that writes (``_for_write`` first),
    its read alias otherwise, with the hints Django passes (the instance).
    """
    if kwargs.get("using"):
        return kwargs["using"]
    writes = getattr(func, "__name__", "") in _WRITES
    for owner in (getattr(func, "__self__", None), *args[:1]):
        if owner is None:
            continue
        if inspect.isgenerator(owner) and owner.gi_frame is not None:
            owner = getattr(owner.gi_frame.f_locals.get("self"), "queryset", None)
        if isinstance(owner, (list, tuple)) and owner:  # prefetch_related_objects(instances)
            owner = owner[0]
        if isinstance(owner, Model):
            route = router.db_for_write if writes else router.db_for_read
            return route(type(owner), instance=owner)
        if isinstance(owner, (QuerySet, BaseManager)):
            return _queryset_alias(owner, writes)
        db = getattr(owner, "db", None)
        if isinstance(db, str):
            return db
    return DEFAULT_DB_ALIAS


def _queryset_alias(owner: QuerySet | BaseManager, writes: bool) -> str:
    """A queryset's or manager's alias, for a read or a write (``QuerySet.db``'s rule)."""
    if owner._db:
        return owner._db
    hints = dict(owner._hints)
    instance = getattr(owner, "instance", None)  # a related manager's
    if isinstance(instance, Model):
        hints.setdefault("instance", instance)
    if writes or getattr(owner, "_for_write", False):
        return router.db_for_write(owner.model, **hints)
    return router.db_for_read(owner.model, **hints)


def place(func: Callable, thread_sensitive: bool, executor: Any) -> Place:
    """Where an ORM call runs: natively for a tandem alias, in a thread for a stock one.

    Decided once when every alias is on one kind of backend; else per call,
    from the alias the call will use.
    """
    everywhere = every_alias_tandem()
    if everywhere is not None:
        return everywhere

    async def routed(*args, **kwargs):
        if is_tandem_alias(_alias_of(func, args, kwargs)):
            return await call_native(func, *args, **kwargs)
        # A stock alias: in a thread, as stock Django, even inside a block
        # (thread-sensitive calls would join it: see block_aware_sync_to_async_call).
        stock = _stock_sync_to_async(func, thread_sensitive=thread_sensitive, executor=executor)
        return await _stock_sync_to_async_call(stock, *args, **kwargs)  # type: ignore[arg-type]  # sync_to_async's declared return type is a protocol

    return routed


routed_sync_to_async = sync_to_async_router(
    place, "``sync_to_async`` that runs calls for tandem aliases natively."
)


async def block_aware_sync_to_async_call(self: asgiref_sync.SyncToAsync, *args: Any, **kwargs: Any) -> Any:
    """``SyncToAsync.__call__``: inside an ``aatomic`` block, thread-sensitive code joins it.

    In a thread, its queries would run on the thread's own connection,
    outside the block's transaction, and survive its rollback. A
    thread-sensitive call promises only that its code runs in one thread
    with the caller's other sync code; the bridge keeps that promise (it is
    the loop's thread) and its queries use the block's connection. Calls
    that are not thread-sensitive, and ``asyncio.to_thread``, stay in
    threads; a query there on a tandem alias raises ``TransactionInThread``.

    While a test transaction is shared (``tandem.testing``), the same: stock
    Django runs an async test with ``async_to_sync`` from the test thread,
    so its thread-sensitive calls run back in the test thread, on the
    test's connection; here they run in the bridge, on that connection.
    """
    if self._thread_sensitive and (in_any_block() or any(test_connections.values())):
        return await call_native(self.func, *args, **kwargs)
    return await _stock_sync_to_async_call(self, *args, **kwargs)


def bridged_async_to_sync_call(self: asgiref_sync.AsyncToSync, *args: Any, **kwargs: Any) -> Any:
    """``AsyncToSync.__call__`` that, inside the bridge, awaits on the running loop.

    asgiref refuses to start a loop in a thread that runs one, so without
    this, sync code called through ``native()`` could not call
    ``async_to_sync(f)`` the way it can under ``sync_to_async`` (Django's
    ``Signal.send`` with async receivers, channels' ``group_send`` in a
    signal handler, ...). In the bridge there is no need for a second loop:
    the coroutine is awaited by the task the sync code runs for, and sees
    the transactions that code is in.
    """
    if in_bridge():
        with lend_connections():
            return await_(self.awaitable(*args, **kwargs))
    return _stock_async_to_sync_call(self, *args, **kwargs)
