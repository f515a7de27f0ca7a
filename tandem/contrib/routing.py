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

from django.db import router

from tandem.bridge.placing import Place, sync_to_async_router
from tandem.db import routing
from tandem.db.scope import is_tandem_alias

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


def _place(func: Callable, thread_sensitive: bool, executor: Any) -> Place:
    """Natively for database work on a tandem alias; anything else as the ORM would place it."""
    database_work = _database_work(func)
    if database_work is None:  # a closure (the db store's save transaction), a user test
        return routing.place(func, thread_sensitive, executor)
    return database_work


contrib_sync_to_async = sync_to_async_router(
    _place, "``sync_to_async`` for sessions and auth: natively for their database work."
)
