"""Which ``sync_to_async`` calls of ``django.contrib`` sessions and auth run natively.

Their async methods (``session.aload``, ``asave``, ``request.auser()``,
``backend.aget_user``, ...) wrap sync methods in ``sync_to_async``. Those of
database-backed classes - the ``db`` and ``cached_db`` session stores,
``ModelBackend`` and its subclasses - run natively when their model lives on
a tandem alias. Any other store or backend (files, a remote directory, your
own) does I/O tandem cannot see, so it keeps its thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async as _stock_sync_to_async
from django.db import router

from tandem.db.routing import routed_sync_to_async
from tandem.db.scope import is_tandem_alias
from tandem.handlers.placement import natively

__all__ = ["contrib_sync_to_async"]


@functools.cache
def _database_model(klass: type[Any]) -> Any:
    """The model a database-backed session store or auth backend uses, or None."""
    from django.apps import apps

    if apps.is_installed("django.contrib.sessions"):
        from django.contrib.sessions.backends.db import SessionStore

        if issubclass(klass, SessionStore):
            return klass.get_model_class()
    if apps.is_installed("django.contrib.auth"):
        from django.contrib.auth import get_user_model
        from django.contrib.auth.backends import ModelBackend

        if issubclass(klass, ModelBackend):
            return get_user_model()
    return None


def _database_work(func: Callable) -> bool | None:
    """For a method of a store or backend: does it query a tandem alias? None: not a method."""
    owner = getattr(func, "__self__", None)
    if owner is None:
        return None
    model = _database_model(owner if isinstance(owner, type) else type(owner))
    return model is not None and is_tandem_alias(router.db_for_write(model))


def contrib_sync_to_async(
    func: Callable | None = None, *, thread_sensitive: bool = True, executor: Any = None
) -> Any:
    """``sync_to_async`` for sessions and auth: natively for their database work."""
    if func is None:
        return functools.partial(contrib_sync_to_async, thread_sensitive=thread_sensitive, executor=executor)
    database_work = _database_work(func)
    if database_work is None:  # a closure (the db store's save transaction), a user test
        return routed_sync_to_async(func, thread_sensitive=thread_sensitive, executor=executor)
    if database_work:
        return natively(func)
    return _stock_sync_to_async(func, thread_sensitive=thread_sensitive, executor=executor)
