"""``arender_to_string``: the async twin of ``django.template.loader.render_to_string``."""

from __future__ import annotations

from typing import Any

from django.template.loader import render_to_string

from tandem.bridge import call_native

__all__ = ["arender_to_string"]


async def arender_to_string(
    template_name: str | list[str],
    context: dict[str, Any] | None = None,
    request: Any = None,
    using: str | None = None,
) -> str:
    """Django's ``render_to_string()``, run in the bridge: its queries are awaited."""
    return await call_native(render_to_string, template_name, context, request, using)
