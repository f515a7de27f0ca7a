"""What the fast lane can take: plain querysets, simple values, one-table queries.

A shape qualifies only when every part of the query that can change its
SQL is known and simple. This module says what that is, for the three
lanes: the model's plain queryset (``plain()``, and ``pristine()`` for a
query untouched since ``Model.objects`` made it), values whose lookups
always compile to one parameter (``SIMPLE_VALUES``), a query on the model's
own table alone (``one_table()``) and a ``WHERE`` that is an ``AND`` of
one-parameter lookups of its columns (``where_key()``).

It imports nothing of tandem.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from django.db.models.expressions import Col
from django.db.models.lookups import Lookup
from django.db.models.query import ModelIterable
from django.db.models.sql.datastructures import BaseTable
from django.db.models.sql.where import AND

__all__ = [
    "ONE_PARAMETER",
    "SIMPLE_VALUES",
    "one_table",
    "plain",
    "pristine",
    "value_types",
    "where_key",
]

# Values whose exact match always compiles to "column = %s".
SIMPLE_VALUES = (int, str, bool, uuid.UUID, datetime.date, datetime.datetime)
# Lookups that compile to "column <op> %s" with the value as the one parameter.
ONE_PARAMETER = frozenset({"exact", "lt", "lte", "gt", "gte"})

# What a model's plain queryset's query holds in its own ``__dict__``: every
# other attribute still has its class default. ``filter()`` is only served for
# such a query, so the query learned from another plain one can stand in for it.
_PRISTINE = frozenset(
    {
        "model", "alias_map", "alias_refcount", "alias_cols", "table_map", "used_aliases",
        "where", "annotations", "extra", "external_aliases", "_filtered_relations",
        "filter_is_sticky", "_annotation_select_cache",
    }
)  # fmt: skip


def plain(queryset: Any) -> bool:
    """True for the model's plain queryset (what ``Model.objects`` gives)."""
    query = queryset.query
    return (
        queryset._iterable_class is ModelIterable
        and not queryset._prefetch_related_lookups
        and not queryset._known_related_objects
        and not queryset._sticky_filter
        and not queryset._defer_next_filter
        and not queryset._fields
        and query.model is queryset.model
        and not query.where
        and not query.annotations
        and not query.extra
        and query.default_cols
        and not query.select
        and not query.select_related
        and not query.select_for_update
        and not query.distinct
        and not query.combinator
        and not query.order_by
        and not query.extra_order_by
        and query.low_mark == 0
        and query.high_mark is None
        and not query.deferred_loading[0]
        and query.deferred_loading[1]
        and not query.alias_map
        and not query.filter_is_sticky
    )


def pristine(queryset: Any) -> bool:
    """A model's plain queryset whose query is as ``Model.objects`` made it."""
    return plain(queryset) and queryset.query.__dict__.keys() <= _PRISTINE


def value_types(kwargs: dict[str, Any]) -> tuple[tuple[str, type], ...] | None:
    """Each keyword and its value's type, in sorted (Django's) order; None if a value is not simple."""
    found = []
    for name in sorted(kwargs):
        kind = type(kwargs[name])
        if kind not in SIMPLE_VALUES:
            return None
        found.append((name, kind))
    return tuple(found)


def one_table(query: Any, db_table: str) -> str | None:
    """The query's one table alias; None if it joins (a join nobody uses is fine)."""
    found = None
    refcount = query.alias_refcount
    for alias, table in query.alias_map.items():
        if type(table) is BaseTable:
            if found is not None or table.table_name != db_table or alias != db_table:
                return None
            found = alias
        elif refcount.get(alias):
            return None
    return found or db_table


def where_key(where: Any, table: str) -> tuple | None:
    """What the SQL of a ``WHERE`` of one-parameter lookups of ``table``'s columns depends on.

    None for any other ``WHERE`` (a join, ``OR``, ``NOT``, a transform, a
    lookup whose SQL may depend on its value such as ``isnull``...).
    """
    if where.connector != AND or where.negated:
        return None
    parts = []
    for child in where.children:
        if not isinstance(child, Lookup) or child.lookup_name not in ONE_PARAMETER:
            return None
        lhs, rhs = child.lhs, child.rhs
        if type(lhs) is not Col or lhs.alias != table or child.bilateral_transforms:
            return None
        if type(rhs) not in SIMPLE_VALUES:
            return None
        parts.append((type(child), lhs.target.column, lhs.output_field is lhs.target, type(rhs)))
    return tuple(parts)
