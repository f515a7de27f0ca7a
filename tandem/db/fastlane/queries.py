"""The fast lane for querysets: ``filter()`` and the SQL built once per shape.

``tandem.db.fastlane.get`` serves ``get()`` whole. A page of a list view is a
longer chain, ``Book.objects.filter(author_id=a).order_by("pk")
.values("id", "title")[:20]``, and two of its steps redo, on every request,
work that only depends on the query's *shape* (the model, the fields and
lookups, the ordering, the selected columns, the slice), not on ``a``:

* ``filter(**kwargs)`` on a model's plain queryset resolves each keyword
  into a field, a join path and a lookup class. Here the first call of a
  shape is Django's; the next ones copy the query it built and put new
  lookups, made from the new values by the same lookup classes, in place
  of its lookups.
* ``SQLCompiler.as_sql()`` turns the query into SQL. Here the first
  compilation of a shape is Django's; the next ones reuse its SQL and the
  compiler's state (selected columns, how rows become objects) and only
  compute the parameters, each lookup's own ``process_rhs()``.

A shape qualifies only when every part of the query that can change the
SQL is known and simple: one table (no join), a ``WHERE`` that is an
``AND`` of ``exact``/``lt``/``lte``/``gt``/``gte`` lookups of columns
against plain values, ordering by names, plain columns selected, a slice;
no annotation, ``extra()``, ``distinct()``, ``select_related()``,
``select_for_update()``, subquery or combinator. A query holding anything
this module does not know (an attribute a later Django adds) takes
Django's lane. When a shape is learned, the parameters computed this way
are compared with the compiler's; a shape where they differ (a boolean
lookup compiled without a parameter, say) never takes the fast lane.

Entries end as ``tandem.db.fastlane.get``'s do: when a setting changes, a schema
editor finishes, or the model's fields or table change. At most
``MAX_SHAPES`` shapes are kept per model (a paginator's offsets make one
shape per page); past that, new shapes take Django's lane.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db.models.expressions import Col
from django.db.models.lookups import Lookup
from django.db.models.sql.datastructures import BaseTable
from django.db.models.sql.where import AND

from tandem import conf
from tandem.db.fastlane.get import SIMPLE_VALUES, plain

__all__ = ["MAX_SHAPES", "as_sql", "filter", "forget"]

MAX_SHAPES = 256
# Lookups that compile to "column <op> %s" with the value as the one parameter.
_ONE_PARAMETER = frozenset({"exact", "lt", "lte", "gt", "gte"})

# Query attributes whose value cannot change the SQL of a one-table query,
# or that the key below covers. Any other attribute takes Django's lane.
_KNOWN = frozenset(
    {
        "model", "alias_map", "alias_refcount", "alias_cols", "alias_prefix", "subq_aliases",
        "table_map", "used_aliases", "where", "filter_is_sticky", "base_table",
        "_annotation_select_cache", "_extra_select_cache", "_lookup_joins",
        "default_cols", "default_ordering", "standard_ordering", "select", "order_by",
        "low_mark", "high_mark", "values_select", "selected", "deferred_loading", "max_depth",
        "annotations", "extra", "_filtered_relations", "external_aliases", "group_by",
        "distinct", "distinct_fields", "select_for_update", "select_for_update_nowait",
        "select_for_update_skip_locked", "select_for_update_of", "select_for_no_key_update",
        "select_related", "combinator", "combinator_all", "combined_queries",
        "annotation_select_mask", "extra_select_mask", "extra_tables", "extra_order_by",
        "explain_info", "subquery", "contains_subquery", "empty_result_set_value",
    }
)  # fmt: skip
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
# Of the known attributes, the ones that must be empty (or False, or None).
_EMPTY = (
    "annotations", "extra", "_filtered_relations", "external_aliases", "distinct",
    "distinct_fields", "select_for_update", "select_related", "combinator", "combined_queries",
    "annotation_select_mask", "extra_select_mask", "extra_tables", "extra_order_by",
    "explain_info", "subquery",
)  # fmt: skip


@dataclass(frozen=True)
class _Filter:
    """The query Django built for one ``filter()`` shape, and its lookups' makings."""

    query: Any
    lookups: tuple  # per keyword, in Django's (sorted) order: (lookup class, its lhs)
    concrete_fields: tuple
    db_table: str


@dataclass(frozen=True)
class _Compiled:
    """The SQL Django compiled for one shape, and the compiler's state after it."""

    sql: str
    params_type: type
    state: dict
    concrete_fields: tuple
    db_table: str


# model -> shape key -> entry, or None for a shape the fast lane cannot take.
_filters: weakref.WeakKeyDictionary[type, dict[tuple, _Filter | None]] = weakref.WeakKeyDictionary()
_compiled: weakref.WeakKeyDictionary[type, dict[tuple, _Compiled | None]] = weakref.WeakKeyDictionary()


def forget() -> None:
    """Drop every learned shape (``tandem.db.fastlane.get.forget`` calls it)."""
    _filters.clear()
    _compiled.clear()


def _current(entry: _Filter | _Compiled, model: Any) -> bool:
    opts = model._meta
    return entry.concrete_fields is opts.concrete_fields and entry.db_table == opts.db_table


def _remember(table: weakref.WeakKeyDictionary, model: Any, key: tuple, entry: Any) -> None:
    shapes = table.setdefault(model, {})
    if len(shapes) < MAX_SHAPES:
        shapes[key] = entry


# -- filter() --------------------------------------------------------------------


def filter(original: Callable[..., Any]) -> Callable[..., Any]:
    """``QuerySet.filter`` with the fast lane in front of it."""

    def filter(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args or not kwargs or not conf.fast_lane() or not _pristine(self):
            return original(self, *args, **kwargs)
        key = _filter_key(self, kwargs)
        if key is None:
            return original(self, *args, **kwargs)
        shapes = _filters.get(self.model)
        entry: Any = shapes.get(key, False) if shapes is not None else False  # False: not learned
        if entry is False:
            return _learn_filter(self, key, kwargs, original)
        if entry is None or not _current(entry, self.model):
            return original(self, *args, **kwargs)
        return _apply_filter(self, entry, kwargs)

    filter.__doc__ = original.__doc__
    filter.__wrapped__ = original  # type: ignore[attr-defined]
    return filter


def _pristine(queryset: Any) -> bool:
    """A model's plain queryset whose query is as ``Model.objects`` made it."""
    return plain(queryset) and queryset.query.__dict__.keys() <= _PRISTINE


def _filter_key(queryset: Any, kwargs: dict[str, Any]) -> tuple | None:
    parts: list = [type(queryset.query)]
    for name in sorted(kwargs):
        kind = type(kwargs[name])
        if kind not in SIMPLE_VALUES:
            return None
        parts.append((name, kind))
    return tuple(parts)


def _learn_filter(queryset: Any, key: tuple, kwargs: dict[str, Any], original: Callable[..., Any]) -> Any:
    """Django's ``filter()``; on the way, note how to rebuild its result."""
    result = original(queryset, **kwargs)
    _remember(_filters, queryset.model, key, _filter_entry(result.query, kwargs))
    return result


def _filter_entry(query: Any, kwargs: dict[str, Any]) -> _Filter | None:
    where = query.where
    children = where.children
    if where.connector != AND or where.negated or len(children) != len(kwargs):
        return None
    table = _one_table(query, query.model._meta.db_table)
    if table is None or _where_key(where, table) is None:
        return None  # a join, or a lookup whose SQL may depend on its value (isnull)
    lookups = []
    for child, name in zip(children, sorted(kwargs), strict=True):
        remade = type(child)(child.lhs, kwargs[name])
        if type(remade.rhs) is not type(child.rhs) or remade.rhs != child.rhs:
            return None
        lookups.append((type(child), child.lhs))
    opts = query.model._meta
    return _Filter(query.clone(), tuple(lookups), opts.concrete_fields, opts.db_table)


def _apply_filter(queryset: Any, entry: _Filter, kwargs: dict[str, Any]) -> Any:
    query = entry.query.clone()
    query.where.children = [
        lookup(lhs, kwargs[name]) for (lookup, lhs), name in zip(entry.lookups, sorted(kwargs), strict=True)
    ]
    clone = queryset._chain()
    clone.query = query
    return clone


# -- SQLCompiler.as_sql() ------------------------------------------------------------


def as_sql(original: Callable[..., Any]) -> Callable[..., Any]:
    """``SQLCompiler.as_sql`` with the fast lane in front of it."""

    def as_sql(self: Any, with_limits: bool = True, with_col_aliases: bool = False) -> Any:
        if not conf.fast_lane():
            return original(self, with_limits, with_col_aliases)
        key = _sql_key(self, with_limits, with_col_aliases)
        if key is None:
            return original(self, with_limits, with_col_aliases)
        model = self.query.model
        shapes = _compiled.get(model)
        entry: Any = shapes.get(key, False) if shapes is not None else False  # False: not learned
        if entry is False:
            return _learn_sql(self, key, with_limits, with_col_aliases, original)
        if entry is None or not _current(entry, model):
            return original(self, with_limits, with_col_aliases)
        params = _params(self)
        if params is None:
            return original(self, with_limits, with_col_aliases)
        query = self.query
        if not any(query.alias_refcount.values()):
            # Django's compiler puts the base table in an empty query's alias
            # map (and leaves its reference count as it was): so do we.
            refcounts = query.alias_refcount.copy()
            query.get_initial_alias()
            query.reset_refcounts(refcounts)
        self.__dict__.update(entry.state)
        self.where = query.where  # no aggregate nor window: split_having_qualify() keeps it whole
        return entry.sql, entry.params_type(params)

    as_sql.__doc__ = original.__doc__
    as_sql.__wrapped__ = original  # type: ignore[attr-defined]
    return as_sql


def _sql_key(compiler: Any, with_limits: bool, with_col_aliases: bool) -> tuple | None:
    """What the SQL of the compiler's query depends on, or None if not a simple shape."""
    query = compiler.query
    model = query.model
    if model is None or query.__dict__.keys() - _KNOWN or query.group_by is not None:
        return None
    for name in _EMPTY:
        if getattr(query, name):
            return None
    table = _one_table(query, model._meta.db_table)
    if table is None:
        return None
    where = _where_key(query.where, table)
    select = _select_key(query.select, table)
    order_by = query.order_by
    if where is None or select is None or not all(type(o) is str for o in order_by):
        return None
    selected = query.selected
    if selected is not None:
        selected = tuple(selected.items())
        if not all(type(value) in (int, str) for _, value in selected):
            return None
    ordering = None
    if not order_by and query.default_ordering:
        ordering = tuple(model._meta.ordering or ())  # None reads as []
        if not all(type(o) is str for o in ordering):
            return None
    deferred, defer = query.deferred_loading
    return (
        type(compiler),
        compiler.using,
        compiler.elide_empty,
        with_limits,
        with_col_aliases,
        tuple(query.alias_map),
        query.alias_cols,
        query.alias_prefix,
        query.default_cols,
        query.default_ordering,
        query.standard_ordering,
        query.low_mark,
        query.high_mark,
        frozenset(deferred),
        defer,
        query.values_select,
        selected,
        order_by,
        ordering,
        where,
        select,
    )


def _one_table(query: Any, db_table: str) -> str | None:
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


def _where_key(where: Any, table: str) -> tuple | None:
    if where.connector != AND or where.negated:
        return None
    parts = []
    for child in where.children:
        if not isinstance(child, Lookup) or child.lookup_name not in _ONE_PARAMETER:
            return None
        lhs, rhs = child.lhs, child.rhs
        if type(lhs) is not Col or lhs.alias != table or child.bilateral_transforms:
            return None
        if type(rhs) not in SIMPLE_VALUES:
            return None
        parts.append((type(child), lhs.target.column, lhs.output_field is lhs.target, type(rhs)))
    return tuple(parts)


def _select_key(select: tuple, table: str) -> tuple | None:
    parts = []
    for column in select:
        if type(column) is not Col or column.alias != table:
            return None
        parts.append(column.target.column)
    return tuple(parts)


def _learn_sql(
    compiler: Any, key: tuple, with_limits: bool, with_col_aliases: bool, original: Callable[..., Any]
) -> Any:
    """Django's ``as_sql()``; on the way, keep its result for the shape."""
    before = set(compiler.__dict__)
    sql, params = original(compiler, with_limits, with_col_aliases)
    ours = _params(compiler)
    entry = None
    if ours is not None and list(ours) == list(params):
        opts = compiler.query.model._meta
        set_up = ("select", "klass_info", "annotation_col_map", "_meta_ordering")
        state = {
            name: value
            for name, value in compiler.__dict__.items()
            if name != "where" and (name not in before or name in set_up)
        }
        entry = _Compiled(sql, type(params), state, opts.concrete_fields, opts.db_table)
    _remember(_compiled, compiler.query.model, key, entry)
    return sql, params


def _params(compiler: Any) -> list | None:
    """The WHERE's parameters, as each lookup makes them; None if one has no SQL."""
    params: list = []
    connection = compiler.connection
    try:
        for lookup in compiler.query.where.children:
            params.extend(lookup.process_rhs(compiler, connection)[1])
    except (EmptyResultSet, FullResultSet):
        return None  # e.g. an integer out of the column's range: Django's lane
    return params
