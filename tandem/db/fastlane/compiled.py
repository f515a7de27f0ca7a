"""The fast lane for ``SQLCompiler.as_sql()``: a one-table query's SQL, compiled once per shape.

The second step of a list view's chain that redoes shape-only work on every
request (``tandem.db.fastlane.filter`` takes the first): the compiler turns
the finished query into SQL. Here the first compilation of a shape is
Django's; the next ones reuse its SQL and the compiler's state (selected
columns, how rows become objects) and only compute the parameters, each
lookup's own ``process_rhs()``. However the query was built (by a fast
``filter()`` or not), it is the query's shape that counts.

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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db.models.expressions import Col

from tandem import conf
from tandem.db.fastlane.cache import NOT_LEARNED, ShapeCache
from tandem.db.fastlane.plain import one_table, where_key

__all__ = ["SqlShape", "as_sql"]

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
# Of the known attributes, the ones that must be empty (or False, or None).
_EMPTY = (
    "annotations", "extra", "_filtered_relations", "external_aliases", "distinct",
    "distinct_fields", "select_for_update", "select_related", "combinator", "combined_queries",
    "annotation_select_mask", "extra_select_mask", "extra_tables", "extra_order_by",
    "explain_info", "subquery",
)  # fmt: skip
# Compiler attributes that as_sql() sets up: kept with the SQL, even if set before.
_SET_UP = ("select", "klass_info", "annotation_col_map", "_meta_ordering")


class SqlShape(NamedTuple):
    """What the SQL of a one-table query depends on: its compiler's and its query's settings.

    A named tuple, hashed and compared as a tuple: as a frozen dataclass
    (whose ``__init__`` sets each of its 21 fields with
    ``object.__setattr__``), it made a served ``as_sql()`` 3 µs slower.
    """

    compiler: type
    using: str
    elide_empty: bool
    with_limits: bool
    with_col_aliases: bool
    aliases: tuple[str, ...]  # the query's alias map's aliases (joins nobody uses included)
    alias_cols: bool
    alias_prefix: str
    default_cols: bool
    default_ordering: bool
    standard_ordering: bool
    low_mark: int
    high_mark: int | None
    deferred: frozenset[str]  # only()/defer() names ...
    defer: bool  # ... and which of the two
    values_select: tuple[str, ...]
    selected: tuple | None  # (name, column index or field name) pairs, values() order
    order_by: tuple[str, ...]
    meta_ordering: tuple[str, ...] | None  # the model's Meta.ordering, when it applies
    where: tuple  # plain.where_key()
    select: tuple[str, ...]  # the selected columns


@dataclass(frozen=True)
class _Compiled:
    """The SQL Django compiled for one shape, and the compiler's state after it."""

    sql: str
    params_type: type
    state: dict


_COMPILED: ShapeCache[_Compiled] = ShapeCache("as_sql")


def as_sql(original: Callable[..., Any]) -> Callable[..., Any]:
    """``SQLCompiler.as_sql`` with the fast lane in front of it."""

    def as_sql(self: Any, with_limits: bool = True, with_col_aliases: bool = False) -> Any:
        if not conf.fast_lane():
            return original(self, with_limits, with_col_aliases)
        key = _shape(self, with_limits, with_col_aliases)
        if key is None:
            return original(self, with_limits, with_col_aliases)
        learned = _COMPILED.lookup(self.query.model, key)
        if learned is NOT_LEARNED:
            return _learn(self, key, with_limits, with_col_aliases, original)
        if learned is None:
            return original(self, with_limits, with_col_aliases)
        params = _params(self)
        if params is None:
            return original(self, with_limits, with_col_aliases)
        learned.served += 1
        entry = learned.entry
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


def _shape(compiler: Any, with_limits: bool, with_col_aliases: bool) -> SqlShape | None:
    """What the SQL of the compiler's query depends on, or None if not a simple shape."""
    query = compiler.query
    model = query.model
    if model is None or query.__dict__.keys() - _KNOWN or query.group_by is not None:
        return None
    for name in _EMPTY:
        if getattr(query, name):
            return None
    table = one_table(query, model._meta.db_table)
    if table is None:
        return None
    where = where_key(query.where, table)
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
    # Positional, in the order of the fields (a keyword call costs a microsecond more).
    return SqlShape(
        type(compiler),  # compiler
        compiler.using,
        compiler.elide_empty,
        with_limits,
        with_col_aliases,
        tuple(query.alias_map),  # aliases
        query.alias_cols,
        query.alias_prefix,
        query.default_cols,
        query.default_ordering,
        query.standard_ordering,
        query.low_mark,
        query.high_mark,
        frozenset(deferred),  # deferred
        defer,
        query.values_select,
        selected,
        order_by,
        ordering,  # meta_ordering
        where,
        select,
    )


def _select_key(select: tuple, table: str) -> tuple[str, ...] | None:
    """The selected columns, if each is a plain column of ``table``."""
    parts = []
    for column in select:
        if type(column) is not Col or column.alias != table:
            return None
        parts.append(column.target.column)
    return tuple(parts)


def _learn(
    compiler: Any, key: SqlShape, with_limits: bool, with_col_aliases: bool, original: Callable[..., Any]
) -> Any:
    """Django's ``as_sql()``; on the way, keep its result for the shape."""
    before = set(compiler.__dict__)
    sql, params = original(compiler, with_limits, with_col_aliases)
    ours = _params(compiler)
    entry = None
    if ours is not None and list(ours) == list(params):
        state = {
            name: value
            for name, value in compiler.__dict__.items()
            if name != "where" and (name not in before or name in _SET_UP)
        }
        entry = _Compiled(sql, type(params), state)
    _COMPILED.remember(compiler.query.model, key, entry)
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
