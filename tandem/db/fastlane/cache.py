"""What the fast lane has learned: per lane, per model, per shape.

Each lane (``get``, ``filter``, ``as_sql``) keeps one ``ShapeCache``: for
each model (held weakly: a model that is garbage-collected is forgotten), a
dict from a shape's key to what was learned from Django for it, or ``None``
for a shape that never takes the fast lane.

An entry stands for the model as it was when it was learned. It is served
only while the model has the same ``_meta.concrete_fields`` object (Django
rebuilds it when the model's fields change) and the same ``db_table``;
otherwise its shape takes Django's lane. Every entry of every lane ends
when a setting changes (``forget`` is connected to ``setting_changed``) and
when a schema editor finishes (``schema_editor_exit``).

At most ``MAX_SHAPES`` shapes are kept per model and lane (each slice is a
shape of its own, so a paginator makes one shape per page); past that, new
shapes take Django's lane until the entries end.

``stats()`` tells what was learned and how often the fast lane served it,
for whoever wonders whether a query takes the fast lane.

This module imports nothing of tandem.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar

__all__ = [
    "MAX_SHAPES",
    "NOT_LEARNED",
    "LaneStats",
    "Learned",
    "ShapeCache",
    "forget",
    "schema_editor_exit",
    "stats",
]

MAX_SHAPES = 256  # per model and lane (read at each remember(): tests may lower it)

E = TypeVar("E")


class _NotLearned(enum.Enum):
    NOT_LEARNED = "not learned"


# What ``ShapeCache.lookup`` returns for a shape nothing was learned about yet.
NOT_LEARNED: Final = _NotLearned.NOT_LEARNED


class Learned(Generic[E]):
    """One shape's entry, the model's state it was learned from, and its use."""

    __slots__ = ("concrete_fields", "db_table", "entry", "served")

    def __init__(self, entry: E, concrete_fields: tuple, db_table: str) -> None:
        self.entry = entry
        self.concrete_fields = concrete_fields
        self.db_table = db_table
        self.served = 0  # how many calls the fast lane served with it (approximate under threads)


@dataclass(frozen=True)
class LaneStats:
    """What one lane learned, for one model or for all of them."""

    learned: int  # shapes that take the fast lane
    ruled_out: int  # shapes that take Django's lane: not simple, or the model changed since
    served: int  # calls the fast lane served, since the shapes were learned


# lane name -> its cache, in the order the lanes were made.
_LANES: dict[str, ShapeCache[Any]] = {}


class ShapeCache(Generic[E]):
    """One lane's entries: model -> shape key -> ``Learned`` entry, or None (never fast)."""

    def __init__(self, lane: str) -> None:
        self.lane = lane
        self._models: weakref.WeakKeyDictionary[type, dict[Hashable, Learned[E] | None]] = (
            weakref.WeakKeyDictionary()
        )
        _LANES[lane] = self

    def lookup(self, model: Any, key: Hashable) -> Learned[E] | Literal[_NotLearned.NOT_LEARNED] | None:
        """The shape's entry if it can serve ``model`` now; None: Django's lane; or NOT_LEARNED."""
        shapes = self._models.get(model)
        if shapes is None:
            return NOT_LEARNED
        learned = shapes.get(key, NOT_LEARNED)
        if learned is None or learned is NOT_LEARNED:
            return learned
        opts = model._meta
        if learned.concrete_fields is opts.concrete_fields and learned.db_table == opts.db_table:
            return learned
        return None  # the model changed since: Django's lane

    def remember(self, model: Any, key: Hashable, entry: E | None) -> None:
        """Keep what was learned for the shape (None: it never takes the fast lane)."""
        shapes = self._models.get(model)
        if shapes is None:
            shapes = self._models.setdefault(model, {})
        if len(shapes) < MAX_SHAPES:
            if entry is None:
                shapes[key] = None
            else:
                opts = model._meta
                shapes[key] = Learned(entry, opts.concrete_fields, opts.db_table)

    def clear(self) -> None:
        """Forget every shape of every model."""
        self._models.clear()

    def stats(self, model: type | None = None) -> LaneStats:
        """What the lane learned for ``model`` (None: for every model), and how much it served."""
        if model is None:
            models = list(self._models)
        else:
            models = [model] if model in self._models else []
        learned = ruled_out = served = 0
        for each in models:
            for key in list(self._models.get(each, ())):
                found = self.lookup(each, key)
                if found is None:
                    ruled_out += 1
                elif found is not NOT_LEARNED:
                    learned += 1
                    served += found.served
        return LaneStats(learned=learned, ruled_out=ruled_out, served=served)


def stats(model: type | None = None) -> dict[str, LaneStats]:
    """Per lane (``"get"``, ``"filter"``, ``"as_sql"``), what the fast lane learned and served.

    For ``model``, or for every model when it is None. Counts start again
    when the shapes end (a setting changes, a schema editor finishes).
    """
    return {lane: cache.stats(model) for lane, cache in _LANES.items()}


def forget(**kwargs: Any) -> None:
    """Drop every shape of every lane (connected to ``setting_changed``; schema editors call it)."""
    for cache in list(_LANES.values()):
        cache.clear()


def schema_editor_exit(original: Callable[..., Any]) -> Callable[..., Any]:
    """``BaseDatabaseSchemaEditor.__exit__``, then every shape dropped."""

    def exit_then_forget(self: Any, *exc_info: Any) -> Any:
        try:
            return original(self, *exc_info)
        finally:
            forget()

    exit_then_forget.__wrapped__ = original  # type: ignore[attr-defined]
    return exit_then_forget
