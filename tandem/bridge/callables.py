"""Is calling this object a coroutine? One answer for all of tandem."""

from __future__ import annotations

import functools
from typing import Any

from asgiref.sync import iscoroutinefunction

__all__ = ["is_async_callable"]


def is_async_callable(obj: Any) -> bool:
    """True if calling ``obj`` returns an awaitable coroutine.

    A coroutine function, a method or ``functools.partial`` of one, a
    function marked with ``markcoroutinefunction``, or an instance whose
    ``__call__`` is one. The one test tandem uses everywhere.
    """
    while isinstance(obj, functools.partial):
        obj = obj.func
    if iscoroutinefunction(obj):
        return True
    if isinstance(obj, type) or not callable(obj):
        return False
    return iscoroutinefunction(type(obj).__call__)
