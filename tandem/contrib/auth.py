"""Password hashing stays off the loop; ``ModelBackend`` queries natively.

Hashing a password is 100+ ms of CPU by design (PBKDF2, argon2). On the
loop thread it would stall every request of the worker, so wherever tandem
runs auth code on the loop, the hash runs in a thread of the loop's default
executor and the code awaits it:

* ``check_password`` and ``make_password`` called in the bridge (a sync
  view or middleware served natively, ``ModelBackend.authenticate``);
* before Django 6.0, which hashes in a thread itself there:
  ``acheck_password`` (``user.acheck_password()``), which Django 5.2 runs on
  the loop, and ``ModelBackend.aauthenticate``: its query runs natively and
  both of its hashes (the user's, or the dummy one for an unknown user that
  evens out timing) in a thread.

* from Django 6.0, which hashes with ``sync_to_async`` itself there: those
  calls, in ``django.contrib.auth`` and its ``hashers``, use the same pool.

Outside the loop (WSGI, management commands) these are Django's own.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model, hashers
from django.contrib.auth.backends import ModelBackend
from django.db import router
from django.views.decorators.debug import sensitive_variables

from tandem.bridge import await_, call_native, in_bridge
from tandem.db.scope import is_tandem_alias

__all__ = [
    "aauthenticate",
    "acheck_password",
    "check_password",
    "django_hashes_in_threads",
    "django_hashes_on_the_loop",
    "hashing_sync_to_async",
    "make_password",
]

_stock_check_password = hashers.check_password
_stock_make_password = hashers.make_password
_stock_aauthenticate = ModelBackend.aauthenticate


# Hashing threads: one core fewer than the machine has, so that however many
# logins arrive at once, the loop thread keeps a core (with as many hashing
# threads as cores, the OS time-slices the loop: tens of ms of stall on 2 cores).
HASHING_THREADS = max(1, (os.cpu_count() or 2) - 1)
_hashing = ThreadPoolExecutor(max_workers=HASHING_THREADS, thread_name_prefix="tandem-hash")


def _in_thread(fn: Callable[..., Any], *args: Any) -> asyncio.Future:
    return asyncio.get_running_loop().run_in_executor(_hashing, functools.partial(fn, *args))


def check_password(password, encoded, setter=None, preferred="default") -> bool:
    """Django's ``check_password``; in the bridge the hash runs in a thread."""
    if not in_bridge():
        return _stock_check_password(password, encoded, setter, preferred)
    is_correct, must_update = await_(_in_thread(hashers.verify_password, password, encoded, preferred))
    if setter and is_correct and must_update:
        setter(password)  # re-hash and save: natively (its hash in a thread too)
    return is_correct


async def acheck_password(password, encoded, setter=None, preferred="default") -> bool:
    """Django's ``acheck_password``, with the hash in a thread instead of on the loop."""
    is_correct, must_update = await _in_thread(hashers.verify_password, password, encoded, preferred)
    if setter and is_correct and must_update:
        await setter(password)
    return is_correct


def make_password(password, salt=None, hasher="default") -> str:
    """Django's ``make_password``; in the bridge the hash runs in a thread."""
    if password is None or not in_bridge():
        return _stock_make_password(password, salt, hasher)
    return await_(_in_thread(_stock_make_password, password, salt, hasher))


def django_hashes_on_the_loop() -> bool:
    """True if this Django's ``acheck_password`` hashes on the loop (before 6.0).

    Django 6.0 moved the hash of ``acheck_password`` and of
    ``ModelBackend.aauthenticate`` to a thread (``sync_to_async`` in
    ``django.contrib.auth.hashers``); there tandem leaves both alone.
    """
    return not hasattr(hashers, "sync_to_async")


def django_hashes_in_threads() -> bool:
    """True where Django (6.0+) sends hashing to ``sync_to_async`` itself."""
    return not django_hashes_on_the_loop()


def hashing_sync_to_async(func: Callable[..., Any] | None = None, **kwargs: Any) -> Any:
    """``sync_to_async`` for Django 6.0+'s hashing calls: tandem's hashing threads.

    Django runs them with ``thread_sensitive=False``, on the loop's default
    executor: as many threads as cores and more, so 20 logins at once on a
    2-core machine had the OS time-slice the loop (62 ms stalls measured).
    tandem's pool leaves the loop a core.
    """
    if func is None:
        return functools.partial(hashing_sync_to_async, **kwargs)
    return sync_to_async(func, thread_sensitive=False, executor=_hashing)


@sensitive_variables("password")
async def aauthenticate(self: ModelBackend, request, username=None, password=None, **kwargs):
    """``ModelBackend.aauthenticate``: ``authenticate()`` natively, hashing in a thread."""
    if not is_tandem_alias(router.db_for_read(get_user_model())):
        return await _stock_aauthenticate(self, request, username, password, **kwargs)
    return await call_native(ModelBackend.authenticate, self, request, username, password, **kwargs)
