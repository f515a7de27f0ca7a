"""Where the async mail twins run Django's sync sending code: in the bridge or in a thread.

The twins call Django's own functions (``send_mail()``, ``EmailMessage.send()``,
...). Whether that may happen on the loop depends on the backend that will
send:

* tandem's SMTP backend (and subclasses), and any backend class that sets
  ``tandem_native = True`` (a promise that its I/O awaits in the bridge): the
  call runs natively;
* Django's ``locmem``, ``console`` and ``dummy`` backends do no network I/O
  (a list append, a write to ``sys.stdout``, nothing): natively too;
* anything else - Django's own SMTP backend, the file-based backend, a
  third-party backend calling an HTTP API - blocks on I/O tandem cannot
  see. On the loop it would stall every task, so the call runs in a thread,
  ``sync_to_async(thread_sensitive=False)``, as an async caller would have
  to do by hand with stock Django.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core import mail
from django.utils.module_loading import import_string

from tandem.bridge.placing import placed

__all__ = ["backend_class", "run", "runs_natively"]

# Django 6.1's default for a MAILERS entry without "BACKEND".
_DJANGO_SMTP = "django.core.mail.backends.smtp.EmailBackend"


@functools.cache
def _class_at(path: str) -> type:
    return import_string(path)


def backend_class(connection: Any = None, using: str | None = None) -> type | None:
    """The class of the backend Django will send with, or None if Django will raise first.

    ``connection``: a backend instance passed by the caller; ``using``: a
    ``MAILERS`` alias (Django 6.1+). Otherwise the default: ``MAILERS
    ["default"]`` where ``MAILERS`` is set (Django 6.1+), else ``EMAIL_BACKEND``.
    """
    if connection is not None:
        return type(connection)
    if hasattr(mail, "mailers") and (using is not None or hasattr(settings, "MAILERS")):
        config = getattr(settings, "MAILERS", {}).get(using or "default")
        if config is None:
            return None  # MailerDoesNotExist, raised before any I/O
        return _class_at(config.get("BACKEND", _DJANGO_SMTP))
    return _class_at(settings.EMAIL_BACKEND)


@functools.cache
def runs_natively(klass: type | None) -> bool:
    """Whether a backend of class ``klass`` may send on the loop, in the bridge."""
    if klass is None:
        return True
    from django.core.mail.backends import console, dummy, filebased, locmem

    if getattr(klass, "tandem_native", False):  # tandem's SMTP backend, or a promise
        return True
    if issubclass(klass, filebased.EmailBackend):  # a console backend that writes files
        return False
    return issubclass(klass, (locmem.EmailBackend, console.EmailBackend, dummy.EmailBackend))


async def run(fn: Callable[..., Any], klass: type | None, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``: in the bridge if ``klass`` sends natively, else in a thread."""
    return await placed(fn, runs_natively(klass), thread_sensitive=False)(*args, **kwargs)
