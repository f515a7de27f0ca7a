"""Tasks' wrappers refuse the databases a test did not declare.

Django's ``SimpleTestCase`` refuses the databases a test did not declare:
it replaces ``connect``, ``temporary_connection``, ``cursor`` and
``chunked_cursor`` (and what else a backend lists) of the test thread's
wrapper of each such alias, on that instance, with a callable that raises
``DatabaseOperationForbidden``. A task's own wrapper of a tandem alias is
another instance, so while a test class runs, the tandem wrapper class
answers for task-owned wrappers in the bridge with the very callables Django
installed: the same refusal, the same message.
"""

from __future__ import annotations

import functools
from typing import Any

from django.db import connections
from django.test import SimpleTestCase

from tandem.bridge import in_bridge
from tandem.db.scope import is_tandem_alias

__all__ = ["add_databases_failures", "remove_databases_failures"]

_stock_add_databases_failures = SimpleTestCase._add_databases_failures.__func__
_stock_remove_databases_failures = SimpleTestCase._remove_databases_failures.__func__

# alias -> what the test classes now running refused on the test thread's
# wrapper, innermost last: the wrapper's class, and by method name the raising
# callable Django put in the method's place.
_refusals: dict[str, list[tuple[type, dict[str, Any]]]] = {}
# (wrapper class, method name) -> [aliases' _refusals going through it, own attribute]
_refusing: dict[tuple[type, str], list[Any]] = {}
_NONE = object()


@classmethod  # type: ignore[misc]  # set on SimpleTestCase by tandem.patches
def add_databases_failures(cls):
    """``SimpleTestCase._add_databases_failures``; tasks' wrappers refuse too.

    What Django put on the wrapper is found by comparing its instance
    attributes before and after: Django 5.2 lists the methods in
    ``SimpleTestCase``, 6.1 in each backend's features.
    """
    before = {alias: dict(connections[alias].__dict__) for alias in connections if is_tandem_alias(alias)}
    _stock_add_databases_failures(cls)
    for alias in _refused_tandem_aliases(cls):
        wrapper = connections[alias]
        seen = before.get(alias, {})
        installed = {
            name: value
            for name, value in wrapper.__dict__.items()
            if callable(value) and seen.get(name, _NONE) is not value
        }
        _refusals.setdefault(alias, []).append((type(wrapper), installed))
        for name in installed:
            _refuse_through(type(wrapper), name)


@classmethod  # type: ignore[misc]  # set on SimpleTestCase by tandem.patches
def remove_databases_failures(cls):
    """``SimpleTestCase._remove_databases_failures``, for tasks' wrappers too."""
    for alias in _refused_tandem_aliases(cls):
        stack = _refusals.get(alias)
        if not stack:
            continue
        wrapper_class, refused = stack.pop()
        if not stack:
            del _refusals[alias]
        for name in refused:
            _stop_refusing_through(wrapper_class, name)
    _stock_remove_databases_failures(cls)


def _refused_tandem_aliases(cls) -> list[str]:
    """The tandem aliases test class ``cls`` did not declare: those Django refuses."""
    return [alias for alias in connections if alias not in cls.databases and is_tandem_alias(alias)]


def _refuse_through(wrapper_class: type, name: str) -> None:
    """Let ``wrapper_class.name`` refuse for the aliases in ``_refusals``.

    The test thread's wrapper has Django's callable on the instance, which
    wins; a task's wrapper inside the bridge, which stands in for it there
    (as ``sync_to_async`` code runs in the test thread in stock Django), finds
    this function. Elsewhere wrappers are left as Django leaves them: on the
    loop outside the bridge the async-safety guard refuses first, and a plain
    thread's wrapper has Django's patched ``ensure_connection`` refuse its
    "threaded connections".
    """
    entry = _refusing.get((wrapper_class, name))
    if entry is not None:
        entry[0] += 1
        return
    own = wrapper_class.__dict__.get(name, _NONE)
    original = getattr(wrapper_class, name)

    @functools.wraps(original)
    def refusing(self, *args, **kwargs):
        stack = _refusals.get(self.alias) if self.task_owned and in_bridge() else None
        if stack and name in stack[-1][1]:
            return stack[-1][1][name](*args, **kwargs)  # raises DatabaseOperationForbidden
        return original(self, *args, **kwargs)

    _refusing[(wrapper_class, name)] = [1, own]
    setattr(wrapper_class, name, refusing)


def _stop_refusing_through(wrapper_class: type, name: str) -> None:
    """Undo one ``_refuse_through``; the last one puts ``wrapper_class.name`` back."""
    entry = _refusing.get((wrapper_class, name))
    if entry is None:
        return
    entry[0] -= 1
    if entry[0]:
        return
    del _refusing[(wrapper_class, name)]
    if entry[1] is _NONE:
        delattr(wrapper_class, name)
    else:
        setattr(wrapper_class, name, entry[1])
