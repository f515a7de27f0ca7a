"""Where a synchronous callable runs when async code calls it: natively, or in a thread.

Django hands its sync code to async callers through ``sync_to_async``, a
thread per call. tandem replaces that name in the Django modules whose
code it can run in the bridge, each time with the same shape of
function: ask where this callable belongs, then run it there. That shape
is ``sync_to_async_router(place)``; ``place(func, thread_sensitive,
executor)`` is the one thing each caller decides:

* ``True``: natively, in the bridge on the loop thread (``natively()``);
* ``False``: in a thread, exactly as asgiref's ``sync_to_async`` would;
* an async callable: the choice depends on the call's arguments (the
  database alias of an ORM call): the router returns what ``place`` built.

``placed(func, on_loop)`` is the same decision for code that calls rather
than replaces ``sync_to_async``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async as _stock_sync_to_async

from tandem.bridge.callables import is_async_callable
from tandem.bridge.greenlets import call_native

__all__ = ["Place", "is_async_callable", "natively", "placed", "sync_to_async_router"]

# What a router's ``place`` answers: True (natively), False (in a thread),
# or an async callable it built for a per-call choice.
Place = bool | Callable[..., Awaitable[Any]]


def natively(func: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """An async function that runs ``func`` in the bridge.

    Leaner than ``native()`` (no ``functools.wraps``: routers make one per
    call), but keeps ``__self__``, which Django reads off middleware methods.
    """

    async def run_natively(*args: Any, **kwargs: Any) -> Any:
        return await call_native(func, *args, **kwargs)

    owner = getattr(func, "__self__", None)
    if owner is not None:
        run_natively.__self__ = owner  # type: ignore[attr-defined]  # a function takes attributes
    return run_natively


def placed(
    func: Callable[..., Any], on_loop: bool, *, thread_sensitive: bool = True, executor: Any = None
) -> Callable[..., Awaitable[Any]]:
    """``func`` as an async callable: natively if ``on_loop``, else as ``sync_to_async`` runs it."""
    if on_loop:
        return natively(func)
    return _stock_sync_to_async(func, thread_sensitive=thread_sensitive, executor=executor)


def sync_to_async_router(
    place: Callable[[Callable[..., Any], bool, Any], Place], doc: str = ""
) -> Callable[..., Any]:
    """A drop-in for asgiref's ``sync_to_async`` that asks ``place`` where each callable runs.

    Same signature as ``sync_to_async`` (usable as a decorator, with or
    without arguments); ``place(func, thread_sensitive, executor)`` answers
    as the module docstring says.
    """

    def routed_sync_to_async(
        func: Callable[..., Any] | None = None, *, thread_sensitive: bool = True, executor: Any = None
    ) -> Any:
        if func is None:
            options = {"thread_sensitive": thread_sensitive, "executor": executor}
            return functools.partial(routed_sync_to_async, **options)
        where = place(func, thread_sensitive, executor)
        if where is True:
            return natively(func)
        if where is False:
            return _stock_sync_to_async(func, thread_sensitive=thread_sensitive, executor=executor)
        return where

    routed_sync_to_async.__doc__ = doc or f"``sync_to_async`` placing calls as ``{place.__name__}`` says."
    return routed_sync_to_async
