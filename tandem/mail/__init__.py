"""Sending email from async code: Django's mail functions, awaited.

``asend_mail``, ``asend_mass_mail``, ``amail_admins`` and ``amail_managers``
take exactly the arguments of their Django counterparts in the installed
Django version (Django 6.1 adds ``using=`` and makes the optional ones
keyword-only) and return the same. Each one calls the Django function:

    from tandem.mail import asend_mail

    await asend_mail("Your order", body, None, [user.email])

With ``EMAIL_BACKEND = "tandem.mail.backends.smtp.EmailBackend"`` the call
runs in the bridge and its SMTP conversation is awaited on the loop. With
another backend it runs where that backend can: see ``tandem.mail.routing``.
``EmailMessage.asend()`` (added by tandem) is the twin of ``send()``.

It may import ``tandem.bridge`` and ``tandem.conf``.
"""

from __future__ import annotations

import inspect
from typing import Any

from django.core import mail

from tandem.mail.routing import backend_class, run

__all__ = ["amail_admins", "amail_managers", "asend_mail", "asend_mass_mail"]


async def _twin(name: str, connection_at: int, args: tuple, kwargs: dict) -> Any:
    # Django's function is looked up at each call, so whatever replaced it
    # (a test's mock, another library) is what runs.
    fn = getattr(mail, name)
    # ``connection`` may come positionally: its place is the same in Django
    # 5.2 and 6.1 (where positional use is deprecated).
    connection = kwargs.get("connection", args[connection_at] if len(args) > connection_at else None)
    return await run(fn, backend_class(connection, kwargs.get("using")), *args, **kwargs)


async def asend_mail(*args: Any, **kwargs: Any) -> int:
    """``django.core.mail.send_mail()`` from async code: same arguments, result and exceptions."""
    return await _twin("send_mail", 7, args, kwargs)


async def asend_mass_mail(*args: Any, **kwargs: Any) -> int:
    """``django.core.mail.send_mass_mail()`` from async code: one connection for all messages."""
    return await _twin("send_mass_mail", 4, args, kwargs)


async def amail_admins(*args: Any, **kwargs: Any) -> None:
    """``django.core.mail.mail_admins()`` from async code: to the ``ADMINS`` setting."""
    await _twin("mail_admins", 3, args, kwargs)


async def amail_managers(*args: Any, **kwargs: Any) -> None:
    """``django.core.mail.mail_managers()`` from async code: to the ``MANAGERS`` setting."""
    await _twin("mail_managers", 3, args, kwargs)


# help() and IDEs show the Django function's parameters, not ``*args, **kwargs``.
for _twin_fn, _name in (
    (asend_mail, "send_mail"),
    (asend_mass_mail, "send_mass_mail"),
    (amail_admins, "mail_admins"),
    (amail_managers, "mail_managers"),
):
    _twin_fn.__signature__ = inspect.signature(getattr(mail, _name))  # type: ignore[union-attr]  # a function takes it
del _twin_fn, _name
