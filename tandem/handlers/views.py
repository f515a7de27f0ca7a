"""How the async handler calls a view: ``ATOMIC_REQUESTS`` and sync views.

Django's async handler passes every view through ``make_view_atomic`` and
then runs a sync view with ``sync_to_async``. tandem's ``make_view_atomic``:

* wraps an async view in ``aatomic`` for each tandem alias with
  ``ATOMIC_REQUESTS`` (stock Django raises ``RuntimeError`` for any async
  view then; a stock alias with ``ATOMIC_REQUESTS`` still does);
* when serving an async request, turns a sync view into an async one that
  runs it where it belongs: on the loop through the bridge
  (``TANDEM_SYNC_VIEWS = "native"`` or ``@on_loop``) or in a thread as stock
  Django does (the default, or ``@in_thread``). Either way its
  ``ATOMIC_REQUESTS`` transaction is Django's ``atomic()`` around the view.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from django.core.handlers.base import BaseHandler
from django.db import connections

from tandem import conf
from tandem.bridge import in_bridge, is_async_callable
from tandem.bridge.placing import placed
from tandem.db.scope import is_tandem_alias
from tandem.handlers.placement import placement
from tandem.transaction import aatomic

__all__ = ["make_view_atomic", "view_runs_on_loop"]

_stock_make_view_atomic = BaseHandler.make_view_atomic


def make_view_atomic(handler: BaseHandler, view: Callable) -> Callable:
    """Wrap ``view`` in a transaction per alias with ``ATOMIC_REQUESTS``; place a sync view."""
    if is_async_callable(view):
        return _atomic_async_view(view)
    wrapped = _stock_make_view_atomic(handler, view)
    if asyncio._get_running_loop() is None or in_bridge():
        return wrapped  # a sync handler (WSGI, the test Client): stock behaviour
    return placed(wrapped, view_runs_on_loop(view))


def view_runs_on_loop(view: Callable) -> bool:
    """True if the sync ``view`` is served on the loop rather than in a thread."""
    if conf.request_path() != "native":
        return False
    mark = placement(view)
    if mark is not None:
        return mark == "loop"
    return conf.sync_views() == "native"


def _atomic_async_view(view: Callable) -> Callable:
    non_atomic: set[str] = getattr(view, "_non_atomic_requests", set())
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
