"""Where Django's sync request code runs: on the loop (the bridge) or in a thread.

Stock Django's async handler runs every synchronous piece of a request - a
sync-only middleware, the ``process_request``/``process_response`` hooks of
``MiddlewareMixin``, ``process_view``, ``process_exception``,
``TemplateResponse.render()``, ``response.close()`` - through
``sync_to_async``: a thread per request and a thread hop per hook. With
``TANDEM_REQUEST_PATH = "native"`` (the default) tandem runs them with
``native()`` on the loop thread instead: their database I/O is awaited and
no thread is involved.

What stays in a thread:

* anything marked ``@in_thread`` (a middleware class, a view, a function),
  or a middleware named in ``TANDEM_THREAD_MIDDLEWARE``: for code that does
  blocking I/O the bridge cannot turn into an ``await`` (a file, a socket,
  an HTTP client);
* Django's own ``thread_sensitive=False`` calls (error responses and their
  logging: a logging handler may send mail) and calls given an executor;
* the whole request path when ``TANDEM_REQUEST_PATH = "threads"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import SyncToAsync

from tandem import conf
from tandem.bridge.placing import Place, sync_to_async_router
from tandem.db import routing

__all__ = [
    "asgi_sync_to_async",
    "handler_sync_to_async",
    "in_thread",
    "on_loop",
    "placement",
    "request_used_a_thread",
    "runs_on_loop",
    "signal_sync_to_async",
]

T = TypeVar("T")

# The attribute the decorators set; read on a function or on its owner.
PLACEMENT = "tandem_placement"


def on_loop(obj: T) -> T:
    """Run this view, middleware class or function on the loop, through the bridge."""
    setattr(obj, PLACEMENT, "loop")
    return obj


def in_thread(obj: T) -> T:
    """Run this view, middleware class or function in a thread, as stock Django does."""
    setattr(obj, PLACEMENT, "thread")
    return obj


def _dotted_path(func: Callable) -> str:
    """The dotted path a setting would name: a method's class, a closure's factory."""
    owner = getattr(func, "__self__", None)
    if owner is not None:
        klass = owner if isinstance(owner, type) else type(owner)
        return f"{klass.__module__}.{klass.__qualname__}"
    qualname = getattr(func, "__qualname__", type(func).__qualname__)
    return f"{getattr(func, '__module__', '')}.{qualname.split('.<locals>')[0]}"


def placement(func: Callable) -> str | None:
    """``"loop"`` or ``"thread"`` if ``func`` or its owner is marked, else None.

    The owner is a method's instance or class, or a class-based view's class.
    """
    mark = getattr(func, PLACEMENT, None)
    if mark is None:
        owner = getattr(func, "__self__", None)
        if owner is None:
            owner = getattr(func, "view_class", None)
        if owner is not None:
            mark = getattr(owner, PLACEMENT, None)
    return mark


def runs_on_loop(func: Callable) -> bool:
    """True if the sync request code ``func`` runs natively on the loop."""
    if conf.request_path() != "native":
        return False
    mark = placement(func)
    if mark is not None:
        return mark == "loop"
    kept = conf.thread_middleware()
    return not kept or _dotted_path(func) not in kept


def _place_request_code(func: Callable, thread_sensitive: bool, executor: Any) -> bool:
    """On the loop unless marked, kept, not thread-sensitive, or given an executor."""
    return thread_sensitive and executor is None and runs_on_loop(func)


handler_sync_to_async = sync_to_async_router(
    _place_request_code, "``sync_to_async`` for Django's request path: on the loop unless told otherwise."
)


def request_used_a_thread() -> bool:
    """True if thread-sensitive code of the current request ran in a thread.

    Django's ASGI handler gives each request a ``ThreadSensitiveContext``;
    its executor (the request's own thread) exists only once something was
    sent to a thread: a sync view served in a thread, an ``@in_thread``
    middleware.
    """
    try:
        context = SyncToAsync.thread_sensitive_context.get()
    except LookupError:
        return False
    return context in SyncToAsync.context_to_thread_executor


def _joins_the_request_thread(func: Callable, thread_sensitive: bool, executor: Any) -> bool:
    """True if ``func`` must queue behind work already in the request's thread."""
    return thread_sensitive and executor is None and request_used_a_thread()


def _place_closing(func: Callable, thread_sensitive: bool, executor: Any) -> Place:
    """``response.close()``: where the request's connections live.

    Closing the response sends ``request_finished``, whose receiver closes
    the calling thread's database connections. When part of the request ran
    in the request's thread, its connections live there: close there too,
    as stock Django does. Otherwise, on the loop.
    """
    if _joins_the_request_thread(func, thread_sensitive, executor):
        return False
    return _place_request_code(func, thread_sensitive, executor)


def _place_receiver(func: Callable, thread_sensitive: bool, executor: Any) -> Place:
    """A sync receiver of ``Signal.asend``: where the ORM would run it.

    Natively for tandem aliases (it joins the sender's task and
    transaction), except in a request that has a thread already: there, as
    in stock Django, it queues behind the thread's work, so that e.g.
    ``request_finished`` after a cancelled request waits for the sync view
    still running in that thread before the request body is closed.
    """
    if _joins_the_request_thread(func, thread_sensitive, executor):
        return False
    return routing.place(func, thread_sensitive, executor)


asgi_sync_to_async = sync_to_async_router(
    _place_closing, "``sync_to_async`` for the ASGI handler's ``response.close()``."
)
signal_sync_to_async = sync_to_async_router(
    _place_receiver, "``sync_to_async`` for ``Signal.asend``'s sync receivers."
)
