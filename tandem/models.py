"""``aget_related``: follow a relation from async code.

In async code ``book.author`` raises ``SynchronousOnlyOperation`` when the
author is not loaded yet: the attribute would query. ``await
aget_related(book, "author")`` runs that attribute access in the bridge, so
the query is awaited, and caches the result on the instance as Django does
(afterwards ``book.author`` works in async code too).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Manager, Model

from tandem.bridge import call_native

__all__ = ["aget_related"]


async def aget_related(instance: Model, name: str) -> Any:
    """The object behind relation ``name`` of ``instance``, loaded natively if needed.

    For a foreign key, a one-to-one (either side) or a generic foreign key.
    A to-many relation (reverse foreign key, many-to-many) is a manager:
    use its async API (``async for b in author.books.all()``,
    ``await author.books.acount()``) instead; asking for one raises
    ``TypeError``, as does a name that is not an attribute of the instance.
    """
    if not hasattr(type(instance), name):
        raise TypeError(f"{type(instance).__name__} has no relation {name!r}.")
    value = await call_native(getattr, instance, name)
    if isinstance(value, Manager):
        raise TypeError(
            f"{type(instance).__name__}.{name} is a to-many relation: use its manager's async API, "
            f"e.g. `async for obj in instance.{name}.all()` or `await instance.{name}.acount()`."
        )
    return value
