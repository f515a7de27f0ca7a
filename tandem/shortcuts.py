"""``arender``: the async twin of ``django.shortcuts.render``."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.shortcuts import render

from tandem.bridge import call_native

__all__ = ["arender"]


async def arender(
    request: Any,
    template_name: str | list[str],
    context: dict[str, Any] | None = None,
    content_type: str | None = None,
    status: int | None = None,
    using: str | None = None,
) -> HttpResponse:
    """Django's ``render()``, run in the bridge.

    The template renders on the loop thread; what it does with the database
    (a lazy queryset it loops over, ``book.author.name``, a ``{% with %}``
    of an aggregate) is awaited, where in plain async code it would raise
    ``SynchronousOnlyOperation``. Same arguments and result as ``render()``.
    """
    return await call_native(render, request, template_name, context, content_type, status, using)
