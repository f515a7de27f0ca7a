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
from contextvars import ContextVar
from typing import Any

from django.core.exceptions import SynchronousOnlyOperation
from django.utils.asyncio import async_unsafe

from tandem.bridge import in_bridge

__all__ = ["bridge_aware_guard", "bridge_aware_guards", "running_loop_unless_passed"]

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


def _refuse_outside_bridge() -> None:
    if (
        asyncio._get_running_loop() is not None
        and not in_bridge()
        and not os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")  # Django's escape hatch
    ):
        raise SynchronousOnlyOperation(MESSAGE)


def bridge_aware_guard(func):
    """Decorator: ``async_unsafe``, except inside the bridge."""

    @functools.wraps(func)
    def guarded(*args, **kwargs):
        _refuse_outside_bridge()
        return func(*args, **kwargs)

    return guarded


# Set while a tandem class's guarded method runs, having passed the guard.
_guard_passed: ContextVar[bool] = ContextVar("tandem_guard_passed", default=False)


def running_loop_unless_passed() -> asyncio.AbstractEventLoop:
    """``django.utils.asyncio.get_running_loop``, as ``async_unsafe`` asks it.

    Raises (as if no loop ran) while a tandem guard has let its caller pass.
    """
    if _guard_passed.get():
        raise RuntimeError("tandem: the caller passed the bridge-aware guard")
    return asyncio.get_running_loop()


def _as_found_on(instance: object, attr: Any):
    """Class attribute ``attr`` as ``instance.name`` gives it, unguarded.

    A function (a patch with a ``self``) is bound to ``instance``; a
    ``mock.patch`` of the class, a ``MagicMock`` (no ``__get__``), is not: it
    is called without the wrapper, as stock Django calls it.
    """
    if _is_async_unsafe(attr):
        attr = attr.__wrapped__
    get = getattr(type(attr), "__get__", None)
    return attr if get is None else get(attr, instance, type(instance))


# (id of a wrapper, method name) for each class patch now running. In stock
# Django a patch that calls the bound method it captured before patching gets
# the original; here that bound method is tandem's, which looks the patch up
# per call, so inside a patch it leads to the original instead.
_patches_running: ContextVar[frozenset] = ContextVar("tandem_patches_running", default=frozenset())


def _running_patch(patch, key: tuple[int, str]):
    """``patch``, calling which marks ``key`` as running."""

    def call(*args, **kwargs):
        token = _patches_running.set(_patches_running.get() | {key})
        try:
            return patch(*args, **kwargs)
        finally:
            _patches_running.reset(token)

    return call


def _regarded(owner: type, name: str):
    stock = owner.__dict__[name]
    plain = stock.__wrapped__

    @functools.wraps(plain)
    def guarded(self, *args, **kwargs):
        # Looked up per call, so that patching the defining class reaches
        # tandem too: Django's TestCase patches ensure_connection to refuse
        # databases a test did not declare, tests mock.patch connect().
        current = owner.__dict__.get(name, stock)
        if current is stock:
            current = plain.__get__(self)
        elif (key := (id(self), name)) in _patches_running.get():
            current = plain.__get__(self)  # the patch called what it replaced
        else:
            current = _running_patch(_as_found_on(self, current), key)
        if asyncio._get_running_loop() is None:
            return current(*args, **kwargs)  # sync code: no guard refuses anything here
        if not in_bridge() and not os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE"):
            raise SynchronousOnlyOperation(MESSAGE)
        # Guarded methods Django calls from here pass too: a patch that ends
        # in the stock method, or SQLite's close() calling
        # BaseDatabaseWrapper.close(self) by name.
        token = _guard_passed.set(True)
        try:
            return current(*args, **kwargs)
        finally:
            _guard_passed.reset(token)

    return guarded


def bridge_aware_guards(cls: type) -> type:
    """Class decorator: let ``cls``'s async-unsafe methods run inside the bridge."""
    from tandem import patches

    patches.install("guard")  # what async_unsafe asks: see running_loop_unless_passed
    for name in dir(cls):
        owner = next((k for k in cls.__mro__ if name in k.__dict__), None)
        if owner is not None and _is_async_unsafe(owner.__dict__[name]):
            setattr(cls, name, _regarded(owner, name))
    return cls
