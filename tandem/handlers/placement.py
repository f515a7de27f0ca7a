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

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import SyncToAsync
from asgiref.sync import sync_to_async as _stock_sync_to_async

from tandem import conf
from tandem.bridge import call_native

if TYPE_CHECKING:
    from typing import TypeGuard

__all__ = [
    "asgi_sync_to_async",
    "handler_sync_to_async",
    "in_thread",
    "natively",
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


def natively(func: Callable) -> Callable:
    """An async function that runs ``func`` with ``native()``.

    Leaner than ``native()`` (no ``functools.wraps``: it is made per hook
    call), but keeps ``__self__``, which Django reads off middleware methods.
    """

    async def run_natively(*args: Any, **kwargs: Any) -> Any:
        return await call_native(func, *args, **kwargs)

    owner = getattr(func, "__self__", None)
    if owner is not None:
        run_natively.__self__ = owner  # type: ignore[attr-defined]  # a function takes attributes
    return run_natively


def handler_sync_to_async(
    func: Callable | None = None, *, thread_sensitive: bool = True, executor: Any = None
) -> Any:
    """``sync_to_async`` for Django's request path: on the loop unless told otherwise."""
    if func is None:
        return functools.partial(handler_sync_to_async, thread_sensitive=thread_sensitive, executor=executor)
    if thread_sensitive and executor is None and runs_on_loop(func):
        return natively(func)
    return _stock_sync_to_async(func, thread_sensitive=thread_sensitive, executor=executor)


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


def _joins_the_request_thread(
    func: Callable | None, thread_sensitive: bool, executor: Any
) -> TypeGuard[Callable]:  # True: func is not None
    """True if ``func`` must queue behind work already in the request's thread."""
    return func is not None and thread_sensitive and executor is None and request_used_a_thread()


def asgi_sync_to_async(
    func: Callable | None = None, *, thread_sensitive: bool = True, executor: Any = None
) -> Any:
    """``sync_to_async`` for the ASGI handler's ``response.close()``.

    Closing the response sends ``request_finished``, whose receiver closes
    the calling thread's database connections. When part of the request ran
    in the request's thread, its connections live there: close there too,
    as stock Django does. Otherwise, on the loop.
    """
    if _joins_the_request_thread(func, thread_sensitive, executor):
        return _stock_sync_to_async(func, thread_sensitive=True)
    return handler_sync_to_async(func, thread_sensitive=thread_sensitive, executor=executor)


def signal_sync_to_async(
    func: Callable | None = None, *, thread_sensitive: bool = True, executor: Any = None
) -> Any:
    """``sync_to_async`` for ``Signal.asend``'s sync receivers.

    Natively for tandem aliases (they join the sender's task and
    transaction), except in a request that has a thread already: there, as
    in stock Django, they queue behind the thread's work, so that e.g.
    ``request_finished`` after a cancelled request waits for the sync view
    still running in that thread before the request body is closed.
    """
    from tandem.db.routing import routed_sync_to_async

    if _joins_the_request_thread(func, thread_sensitive, executor):
        return _stock_sync_to_async(func, thread_sensitive=True)
    return routed_sync_to_async(func, thread_sensitive=thread_sensitive, executor=executor)
