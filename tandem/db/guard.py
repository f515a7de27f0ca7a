"""Django's async-safety guard, relaxed for tandem backends inside the bridge.

Django marks connection methods with ``@async_unsafe``: they raise
``SynchronousOnlyOperation`` whenever an event loop runs in the thread. For a
tandem backend that is right in plain async code (a lazy foreign key would
block the loop) but wrong inside ``native()``, where its I/O is awaited.
``bridge_aware_guards`` re-wraps those methods on a tandem class only, so a
stock backend reached from inside the bridge still raises.
"""

from __future__ import annotations

import asyncio
import functools
import os

from django.core.exceptions import SynchronousOnlyOperation
from django.utils.asyncio import async_unsafe

from tandem.bridge import in_bridge

MESSAGE = (
    "You cannot call this from an async context: it would block the event loop. "
    "In async code use the ORM's async methods (aget, acreate, async for, asave, ...) "
    "and load related objects and fields up front with select_related(), "
    "prefetch_related() or only() instead of lazy attribute access; run other "
    "synchronous ORM code with `await tandem.native(fn)()`."
)

_GUARD_CODE = async_unsafe(lambda: None).__code__


def _is_async_unsafe(attr: object) -> bool:
    return getattr(attr, "__code__", None) is _GUARD_CODE and hasattr(attr, "__wrapped__")


def _guarded(func):
    @functools.wraps(func)
    def guarded(*args, **kwargs):
        if (
            asyncio._get_running_loop() is not None
            and not in_bridge()
            and not os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")  # Django's escape hatch
        ):
            raise SynchronousOnlyOperation(MESSAGE)
        return func(*args, **kwargs)

    return guarded


def bridge_aware_guards(cls: type) -> type:
    """Class decorator: let ``cls``'s async-unsafe methods run inside the bridge."""
    for name in dir(cls):
        attr = getattr(cls, name, None)
        if _is_async_unsafe(attr):
            setattr(cls, name, _guarded(attr.__wrapped__))
    return cls
