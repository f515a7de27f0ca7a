"""Make Django's own async API native for aliases on tandem backends.

Django's ``a*`` methods (``QuerySet.aget``, ``Model.asave``, related managers,
``aprefetch_related_objects``, ``AsyncPaginator``, ...) all end in
``sync_to_async(sync_method)``. We replace that name, in the modules that
use it (listed in ``tandem.patches``), by ``routed_sync_to_async``: same signature, but when the call is for
a tandem alias it runs the sync method with ``native()`` on the loop thread.
Calls for stock aliases keep Django's thread behaviour.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from asgiref import sync as asgiref_sync
from django.db import DEFAULT_DB_ALIAS, router

from tandem.bridge import await_, call_native, in_bridge
from tandem.scope import every_alias_tandem, is_tandem_alias, lend_connections

_stock_sync_to_async = asgiref_sync.sync_to_async
_stock_async_to_sync_call = asgiref_sync.AsyncToSync.__call__


def _alias_of(func: Callable, args: tuple, kwargs: dict) -> str:
    """Best guess of the database alias a wrapped ORM call will use."""
    if kwargs.get("using"):
        return kwargs["using"]
    for owner in (getattr(func, "__self__", None), *args[:1]):
        if owner is None:
            continue
        if inspect.isgenerator(owner) and owner.gi_frame is not None:
            owner = getattr(owner.gi_frame.f_locals.get("self"), "queryset", None)
        if isinstance(owner, (list, tuple)) and owner:  # prefetch_related_objects(instances)
            owner = owner[0]
        state = getattr(owner, "_state", None)
        if state is not None:  # a model instance: where it lives, or will be written
            return state.db or router.db_for_write(type(owner), instance=owner)
        db = getattr(owner, "db", None)
        if isinstance(db, str):
            return db
    return DEFAULT_DB_ALIAS


def routed_sync_to_async(
    func: Callable | None = None, *, thread_sensitive: bool = True, executor: Any = None
):
    """``sync_to_async`` that runs calls for tandem aliases natively."""
    if func is None:
        return lambda f: routed_sync_to_async(f, thread_sensitive=thread_sensitive, executor=executor)
    everywhere = every_alias_tandem()
    if everywhere:
        return functools.partial(call_native, func)
    if everywhere is False:
        return _stock_sync_to_async(func, thread_sensitive=thread_sensitive, executor=executor)

    async def routed(*args, **kwargs):
        if is_tandem_alias(_alias_of(func, args, kwargs)):
            return await call_native(func, *args, **kwargs)
        stock = _stock_sync_to_async(func, thread_sensitive=thread_sensitive, executor=executor)
        return await stock(*args, **kwargs)

    return routed


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


def install() -> None:
    """Activate tandem for the process (called from ``TandemConfig.ready``)."""
    from django.core.signals import setting_changed

    from tandem import conf, fastlane, patches, scope
    from tandem.handlers import blocking

    setting_changed.connect(conf.forget)
    setting_changed.connect(fastlane.forget)
    scope.install()
    patches.install("guard")
    patches.install("core")
    patches.when_imported("django.test", lambda: patches.install("testing"))
    blocking.install()
