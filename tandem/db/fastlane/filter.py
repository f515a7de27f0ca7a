"""The fast lane for ``filter()``: the query Django built for a shape, rebuilt with new values.

``tandem.db.fastlane.get`` serves ``get()`` whole. A page of a list view is a
longer chain, ``Book.objects.filter(author_id=a).order_by("pk")
.values("id", "title")[:20]``, and two of its steps redo, on every request,
work that only depends on the query's *shape* (the model, the fields and
lookups, the ordering, the selected columns, the slice), not on ``a``.
This module takes the first, ``tandem.db.fastlane.compiled`` the second.

``filter(**kwargs)`` on a model's pristine queryset (``plain.pristine()``)
resolves each keyword into a field, a join path and a lookup class. Here
the first call of a shape is Django's; the next ones copy the query it
built and put new lookups, made from the new values by the same lookup
classes, in place of its lookups (so the values are checked and prepared
exactly as Django does it).

A shape is learned only when every keyword became an ``exact``, ``lt``,
``lte``, ``gt`` or ``gte`` lookup of a column of the model's own table
(``plain.where_key()``) and a lookup remade from the same value equals
Django's: a ``filter()`` whose SQL may depend on the value (``isnull``, a
join) is never learned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db.models.sql.where import AND

from tandem import conf
from tandem.db.fastlane.cache import NOT_LEARNED, ShapeCache
from tandem.db.fastlane.plain import one_table, pristine, value_types, where_key

__all__ = ["FilterShape", "filter"]


class FilterShape(NamedTuple):
    """A ``filter()``'s shape: the query's class, and each keyword's name and value type."""

    query_class: type
    lookups: tuple[tuple[str, type], ...]  # (keyword, type of its value), in sorted order


@dataclass(frozen=True)
class _Filter:
    """The query Django built for one ``filter()`` shape, and its lookups' makings."""

    query: Any
    lookups: tuple  # per keyword, in Django's (sorted) order: (lookup class, its lhs)


_FILTERS: ShapeCache[_Filter] = ShapeCache("filter")


def filter(original: Callable[..., Any]) -> Callable[..., Any]:
    """``QuerySet.filter`` with the fast lane in front of it."""

    def filter(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args or not kwargs or not conf.fast_lane() or not pristine(self):
            return original(self, *args, **kwargs)
        lookups = value_types(kwargs)
        if lookups is None:
            return original(self, *args, **kwargs)
        key = FilterShape(type(self.query), lookups)
        learned = _FILTERS.lookup(self.model, key)
        if learned is NOT_LEARNED:
            return _learn(self, key, kwargs, original)
        if learned is None:
            return original(self, *args, **kwargs)
        learned.served += 1
        return _apply(self, learned.entry, kwargs)

    filter.__doc__ = original.__doc__
    filter.__wrapped__ = original  # type: ignore[attr-defined]
    return filter


def _learn(queryset: Any, key: FilterShape, kwargs: dict[str, Any], original: Callable[..., Any]) -> Any:
    """Django's ``filter()``; on the way, note how to rebuild its result."""
    result = original(queryset, **kwargs)
    _FILTERS.remember(queryset.model, key, _entry(result.query, kwargs))
    return result


def _entry(query: Any, kwargs: dict[str, Any]) -> _Filter | None:
    """How to rebuild ``query`` for other values of ``kwargs``; None if it cannot be."""
    where = query.where
    children = where.children
    if where.connector != AND or where.negated or len(children) != len(kwargs):
        return None
    table = one_table(query, query.model._meta.db_table)
    if table is None or where_key(where, table) is None:
        return None  # a join, or a lookup whose SQL may depend on its value (isnull)
    lookups = []
    for child, name in zip(children, sorted(kwargs), strict=True):
        remade = type(child)(child.lhs, kwargs[name])
        if type(remade.rhs) is not type(child.rhs) or remade.rhs != child.rhs:
            return None
        lookups.append((type(child), child.lhs))
    return _Filter(query.clone(), tuple(lookups))


def _apply(queryset: Any, entry: _Filter, kwargs: dict[str, Any]) -> Any:
    """The learned query, cloned, with lookups of the new values: Django's result."""
    query = entry.query.clone()
    query.where.children = [
        lookup(lhs, kwargs[name]) for (lookup, lhs), name in zip(entry.lookups, sorted(kwargs), strict=True)
    ]
    clone = queryset._chain()
    clone.query = query
    return clone
