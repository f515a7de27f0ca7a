"""``EmailMessage.asend()``: the async twin of ``send()``, added to Django's class.

tandem adds it through its patch registry (``tandem.patches``), only while
Django has no ``asend`` of its own; ``EmailMultiAlternatives`` and every
other subclass inherit it.
"""

from __future__ import annotations

from typing import Any

from tandem.mail.routing import backend_class, run

__all__ = ["asend"]


async def asend(self: Any, fail_silently: bool = False, **kwargs: Any) -> int:
    """``send(fail_silently)`` from async code: the number of messages sent (0 or 1).

    Takes what the installed Django's ``send()`` takes (Django 6.1: also
    ``using=``). Runs in the bridge with tandem's SMTP backend or one that
    does no I/O, in a thread with any other (see ``tandem.mail.routing``).
    """
    # The message's own connection, if it has one (Django 6.1 keeps it in
    # ``_connection`` and deprecates reading ``connection``).
    state = vars(self)
    connection = state.get("_connection", state.get("connection"))
    return await run(self.send, backend_class(connection, kwargs.get("using")), fail_silently, **kwargs)
