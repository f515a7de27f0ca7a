"""Async tests see their test's transaction.

Django's ``TestCase`` (and pytest-django's ``django_db`` marker, which uses
it) wraps each test in a transaction on the test thread's connection. Its
async tests then run on an event loop, where tandem would give every task a
connection of its own: they would not see ``setUpTestData`` or fixture rows,
and their writes would escape the rollback.

So while a ``TestCase`` transaction is open, every task on every loop uses
the test thread's wrapper for tandem aliases, one unit of work at a time.
``TransactionTestCase`` (``transaction=True``) opens no transaction, so tasks
keep their own pooled connections, as in production.

Stock Django runs an async test with ``async_to_sync`` from the test thread,
so every thread-sensitive ``sync_to_async`` call of the test (a sync view or
middleware under ``AsyncClient``, a session save, a sync signal receiver)
runs back in the test thread, on the test's connection. Under tandem the
loop may be the test thread itself, so while a test transaction is shared
those calls run with ``native()`` instead: same connection, same
transaction, one at a time, as in stock Django.

Django's ``SimpleTestCase`` refuses the databases a test did not declare:
it replaces ``connect``, ``temporary_connection``, ``cursor`` and
``chunked_cursor`` (and what else a backend lists) of the test thread's
wrapper of each such alias, on that instance, with a callable that raises
``DatabaseOperationForbidden``. A
task's own wrapper of a tandem alias is another instance, so while a test
class runs, the tandem wrapper class answers for task-owned wrappers in the
bridge with the very callables Django installed: the same refusal, the same
message.
"""

from __future__ import annotations

import functools
from typing import Any

from asgiref.sync import SyncToAsync
from django.db import connections
from django.test import SimpleTestCase, TestCase

from tandem.bridge import call_native, in_bridge
from tandem.scope import Shared, is_tandem_alias, test_connections

_stock_enter_atomics = TestCase._enter_atomics.__func__
_stock_rollback_atomics = TestCase._rollback_atomics.__func__
_stock_sync_to_async_call = SyncToAsync.__call__
_stock_add_databases_failures = SimpleTestCase._add_databases_failures.__func__
_stock_remove_databases_failures = SimpleTestCase._remove_databases_failures.__func__


@classmethod  # type: ignore[misc]  # set on TestCase / SimpleTestCase by tandem.patches
def enter_atomics(cls):
    """``TestCase._enter_atomics``, sharing each tandem alias's test transaction."""
    atomics = _stock_enter_atomics(cls)
    for alias in atomics:
        if is_tandem_alias(alias):
            wrapper = connections[alias]
            wrapper.inc_thread_sharing()  # the loop may run in another thread
            test_connections.setdefault(alias, []).append(Shared(alias, wrapper))
    return atomics


@classmethod  # type: ignore[misc]  # set on TestCase / SimpleTestCase by tandem.patches
def rollback_atomics(cls, atomics):
    """``TestCase._rollback_atomics``, ending the sharing first."""
    for alias in atomics:
        stack = test_connections.get(alias)
        if stack:
            stack.pop().wrapper.dec_thread_sharing()
    _stock_rollback_atomics(cls, atomics)


async def sync_to_async_call(self: SyncToAsync, *args: Any, **kwargs: Any) -> Any:
    """``SyncToAsync.__call__``: while a test transaction is shared, natively."""
    if getattr(self, "_thread_sensitive", False) and any(test_connections.values()):
        return await call_native(self.func, *args, **kwargs)
    return await _stock_sync_to_async_call(self, *args, **kwargs)


# alias -> what the test classes now running refused on the test thread's
# wrapper, innermost last: the wrapper's class, and by method name the raising
# callable Django put in the method's place.
refusals: dict[str, list[tuple[type, dict[str, Any]]]] = {}
# (wrapper class, method name) -> [aliases' refusals going through it, own attribute]
_refusing: dict[tuple[type, str], list[Any]] = {}
_NONE = object()


@classmethod  # type: ignore[misc]  # set on TestCase / SimpleTestCase by tandem.patches
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
        refusals.setdefault(alias, []).append((type(wrapper), installed))
        for name in installed:
            _refuse_through(type(wrapper), name)


@classmethod  # type: ignore[misc]  # set on TestCase / SimpleTestCase by tandem.patches
def remove_databases_failures(cls):
    """``SimpleTestCase._remove_databases_failures``, for tasks' wrappers too."""
    for alias in _refused_tandem_aliases(cls):
        stack = refusals.get(alias)
        if not stack:
            continue
        wrapper_class, refused = stack.pop()
        if not stack:
            del refusals[alias]
        for name in refused:
            _stop_refusing_through(wrapper_class, name)
    _stock_remove_databases_failures(cls)


def _refused_tandem_aliases(cls) -> list[str]:
    return [alias for alias in connections if alias not in cls.databases and is_tandem_alias(alias)]


def _refuse_through(wrapper_class: type, name: str) -> None:
    """Let ``wrapper_class.name`` refuse for the aliases in ``refusals``.

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
        stack = refusals.get(self.alias) if self.task_owned and in_bridge() else None
        if stack and name in stack[-1][1]:
            return stack[-1][1][name](*args, **kwargs)  # raises DatabaseOperationForbidden
        return original(self, *args, **kwargs)

    _refusing[(wrapper_class, name)] = [1, own]
    setattr(wrapper_class, name, refusing)


def _stop_refusing_through(wrapper_class: type, name: str) -> None:
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
