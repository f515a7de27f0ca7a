"""``ATOMIC_REQUESTS`` for async views on tandem aliases.

Stock Django raises ``RuntimeError`` for an async view when any alias has
``ATOMIC_REQUESTS = True``. For tandem aliases we wrap the view in
``aatomic``; ``non_atomic_requests`` is honoured; a stock alias with
``ATOMIC_REQUESTS`` still raises, as it must.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction
from django.core.handlers.base import BaseHandler
from django.db import connections

from tandem.scope import is_tandem_alias
from tandem.transaction import aatomic

_stock_make_view_atomic = BaseHandler.make_view_atomic


def make_view_atomic(handler: BaseHandler, view):
    """Wrap ``view`` in a transaction per alias with ``ATOMIC_REQUESTS``."""
    if not iscoroutinefunction(view):
        return _stock_make_view_atomic(handler, view)
    non_atomic = getattr(view, "_non_atomic_requests", set())
    aliases = [
        alias
        for alias, settings_dict in connections.settings.items()
        if settings_dict["ATOMIC_REQUESTS"] and alias not in non_atomic
    ]
    stock = [alias for alias in aliases if not is_tandem_alias(alias)]
    if stock:
        raise RuntimeError(
            f"You cannot use ATOMIC_REQUESTS with async views on database aliases "
            f"{stock} (stock Django backends); tandem backends support it."
        )
    for alias in aliases:
        view = aatomic(using=alias)(view)
    return view


def install() -> None:
    """Replace ``BaseHandler.make_view_atomic``."""
    BaseHandler.make_view_atomic = make_view_atomic
