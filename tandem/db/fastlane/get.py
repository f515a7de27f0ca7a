"""The fast lane for ``QuerySet.get()``: by exact field values, served whole from a plan.

A view runs the same few queries on every request with different values:
``Article.objects.get(pk=pk)``, ``User.objects.get(username=name)``. Django
builds each one from scratch: it clones the queryset, resolves the lookups,
compiles the SQL and works out the row converters (about two thirds of a
``get()``'s time on PostgreSQL). The SQL and the converters only depend on
the query's *shape*: the model, the fields looked up, the types of the
values, the database. The fast lane keeps them per shape and, next time,
only computes the parameters, executes and builds the instance.

It applies to ``QuerySet.get(**kwargs)`` (and so ``aget()``, which tandem
runs in the bridge) when:

* the queryset is the model's plain one: no filter, annotation, ordering,
  slicing, ``only()``/``defer()``, ``select_related()``, ``values()``,
  ``select_for_update()``, prefetching, union... (a custom manager that
  filters makes it not plain);
* every keyword is ``pk`` or a concrete field of the model, with an exact
  match on a value of a simple type (int, str, bool, UUID, date, datetime;
  ``None`` changes the SQL to ``IS NULL``, so it takes the normal lane).

Everything else takes Django's lane. The first ``get()`` of a shape takes
it too, and the fast lane learns from Django's own compiler what the SQL,
the parameters and the converters are; if the parameters it would have
computed differ from the compiler's, that shape never takes the fast lane.
The query still goes through Django's cursor (query logging,
``assertNumQueries``, execute wrappers), and the instance is built by
``Model.from_db()`` as Django builds it.

A shape's plan ends when the model's fields or table change, when a
schema editor finishes, and when any setting changes
(``tandem.db.fastlane.cache``). ``TANDEM_FAST_LANE = False`` turns the
fast lane off.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections
from django.db.models.query import MAX_GET_RESULTS

try:  # Django 6.1+: how ModelIterable builds an instance for a fetch mode
    from django.db.models.query import _get_from_db
except ImportError:  # Django 5.2: querysets have no fetch mode
    _get_from_db = None

from tandem import conf
from tandem.db.fastlane.cache import NOT_LEARNED, Learned, ShapeCache
from tandem.db.fastlane.plain import plain, value_types

__all__ = ["GetShape", "get"]

# Fields whose exact lookup is a plain comparison with one parameter.
_SIMPLE_FIELDS = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "SmallAutoField",
        "IntegerField",
        "BigIntegerField",
        "SmallIntegerField",
        "PositiveIntegerField",
        "PositiveBigIntegerField",
        "PositiveSmallIntegerField",
        "CharField",
        "SlugField",
        "TextField",
        "UUIDField",
        "BooleanField",
        "DateField",
        "DateTimeField",
    }
)


class GetShape(NamedTuple):
    """A ``get()``'s shape: the database, and each keyword's name and value type."""

    db: str
    vendor: str
    lookups: tuple[tuple[str, type], ...]  # (keyword, type of its value), in sorted order


@dataclass(frozen=True)
class _Plan:
    """What Django compiled for one shape, to run again with new values."""

    sql: str
    fields: tuple  # the model fields looked up, in the order of the parameters
    ranges: tuple  # per field, the backend's (min, max) for an integer field, else None
    init_list: list[str]  # attnames of the selected columns, for from_db()
    converters: tuple  # (position, (converter, ...), expression)


_PLANS: ShapeCache[_Plan] = ShapeCache("get")


def get(original: Callable[..., Any]) -> Callable[..., Any]:
    """``QuerySet.get`` with the fast lane in front of it."""

    def get(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args or not kwargs or not plain(self) or not conf.fast_lane():
            return original(self, *args, **kwargs)
        key = _shape(self, kwargs)
        if key is None:
            return original(self, *args, **kwargs)
        learned = _PLANS.lookup(self.model, key)
        if learned is NOT_LEARNED:
            return _learn(self, key, kwargs, original)
        if learned is None:
            return original(self, *args, **kwargs)
        found = _run(self, learned, kwargs)
        return original(self, *args, **kwargs) if found is None else found

    get.__doc__ = original.__doc__
    get.__wrapped__ = original  # type: ignore[attr-defined]
    return get


def _shape(queryset: Any, kwargs: dict[str, Any]) -> GetShape | None:
    """The shape's key, or None if a value is not of a simple type."""
    lookups = value_types(kwargs)
    if lookups is None:
        return None
    db = queryset.db
    return GetShape(db, connections[db].vendor, lookups)


def _fields(model: Any, kwargs: dict[str, Any]) -> tuple | None:
    """The fields looked up, in sorted keyword order (Django's), if each is simple."""
    opts = model._meta
    found = []
    for name in sorted(kwargs):
        field = opts.pk if name == "pk" else _concrete(opts, name)
        if (
            field is None
            or getattr(field, "generated", False)
            or field.get_internal_type() not in _SIMPLE_FIELDS
        ):
            return None
        found.append(field)
    return tuple(found)


def _concrete(opts: Any, name: str) -> Any:
    for field in opts.concrete_fields:
        if field.name == name:
            return field
    return None


def _params(plan_fields: tuple, ranges: tuple, kwargs: dict[str, Any], connection: Any) -> list | None:
    """The parameters Django's exact lookups would send, in SQL order.

    None when an integer is out of its column's range: Django's lookup then
    answers "no rows" without a query, which Django's lane does.
    """
    params = []
    for field, bounds, name in zip(plan_fields, ranges, sorted(kwargs), strict=True):
        value = field.get_prep_value(kwargs[name])
        if bounds is not None and not _within(value, bounds):
            return None
        params.append(field.get_db_prep_value(value, connection, prepared=True))
    return params


def _within(value: Any, bounds: tuple) -> bool:
    low, high = bounds
    return (low is None or value >= low) and (high is None or value <= high)


def _ranges(fields: tuple, connection: Any) -> tuple:
    """What Django's integer lookups check values against, per field (None: nothing)."""
    from django.db.models import IntegerField

    found = []
    for field in fields:
        bounds = None
        if isinstance(field, IntegerField):
            try:
                bounds = connection.ops.integer_field_range(field.get_internal_type())
            except KeyError:
                bounds = None
        found.append(bounds)
    return tuple(found)


def _learn(queryset: Any, key: GetShape, kwargs: dict[str, Any], original: Callable[..., Any]) -> Any:
    """Django's ``get()``; on the way, compile the shape's plan (or rule it out)."""
    try:
        plan = _compile(queryset, kwargs)
    except (EmptyResultSet, FullResultSet):
        pass  # these values need no query (an integer out of range): learn from others
    else:
        _PLANS.remember(queryset.model, key, plan)
    return original(queryset, **kwargs)


def _compile(queryset: Any, kwargs: dict[str, Any]) -> _Plan | None:
    model = queryset.model
    fields = _fields(model, kwargs)
    if fields is None:
        return None
    # What get() runs, built as get() builds it.
    clone = queryset.filter(**kwargs).order_by()
    clone.query.set_limits(high=MAX_GET_RESULTS)
    connection = connections[clone.db]
    compiler = clone.query.get_compiler(using=clone.db)
    sql, params = compiler.as_sql()
    ranges = _ranges(fields, connection)
    if list(params) != _params(fields, ranges, kwargs, connection):
        return None
    klass_info = compiler.klass_info
    if klass_info is None or compiler.annotation_col_map or klass_info.get("related_klass_infos"):
        return None
    start, end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
    if start != 0 or end != len(compiler.select):
        return None
    init_list = [column[0].target.attname for column in compiler.select[start:end]]
    converters = compiler.get_converters([column[0] for column in compiler.select[: compiler.col_count]])
    rebound = tuple(
        (pos, tuple(_unbind(f, connection) for f in fs), e) for pos, (fs, e) in converters.items()
    )
    return _Plan(
        sql=sql,
        fields=fields,
        ranges=ranges,
        init_list=init_list,
        converters=rebound,
    )


def _unbind(converter: Callable[..., Any], connection: Any) -> Any:
    """A converter bound to this connection's ``ops`` is rebound to each run's."""
    if getattr(converter, "__self__", None) is connection.ops:
        return ("ops", converter.__func__)  # type: ignore[attr-defined]  # a bound method
    return converter


def _run(queryset: Any, learned: Learned[_Plan], kwargs: dict[str, Any]) -> Any:
    """The instance, from the shape's plan; None to leave the answer to Django's lane."""
    plan = learned.entry
    db = queryset.db
    connection = connections[db]
    params = _params(plan.fields, plan.ranges, kwargs, connection)
    if params is None:
        return None
    learned.served += 1
    with connection.cursor() as cursor:
        cursor.execute(plan.sql, params)
        rows = cursor.fetchall()
    model = queryset.model
    if len(rows) == 1:
        row = _convert(rows[0], plan.converters, connection) if plan.converters else rows[0]
        return _instance(queryset, db, plan.init_list, row)
    if not rows:
        raise model.DoesNotExist(f"{model._meta.object_name} matching query does not exist.")
    num = len(rows) if len(rows) < MAX_GET_RESULTS else f"more than {MAX_GET_RESULTS - 1}"
    raise model.MultipleObjectsReturned(
        f"get() returned more than one {model._meta.object_name} -- it returned {num}!"
    )


def _instance(queryset: Any, db: str, init_list: list[str], row: Any) -> Any:
    """The model instance, built as Django's ModelIterable builds it."""
    model = queryset.model
    fetch_mode = getattr(queryset, "_fetch_mode", None)  # Django 6.1+
    if fetch_mode is None:
        return model.from_db(db, init_list, row)
    obj = _get_from_db(model, fetch_mode)(db, init_list, row)
    if fetch_mode.track_peers:
        obj._state.peers = [weakref.ref(obj)]
    return obj


def _convert(row: tuple, converters: tuple, connection: Any) -> list:
    values = list(row)
    ops = connection.ops
    for position, functions, expression in converters:
        value = values[position]
        for function in functions:
            if type(function) is tuple:
                value = function[1](ops, value, expression, connection)
            else:
                value = function(value, expression, connection)
        values[position] = value
    return values
