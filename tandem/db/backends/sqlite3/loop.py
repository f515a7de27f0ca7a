"""Statements on the loop thread, under a time budget.

``LoopState`` holds the progress handler that, once a statement has had its
budget, stops a read or lets the loop run during a write in a transaction;
the guards send a Python function of the user's, called from a statement on
the loop, where it may run. ``loop_factory`` makes the ``sqlite3.Connection``
class that installs the guards. See docs/concepts/sqlite.md.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tandem.bridge import await_
from tandem.db.threaded import Worker

__all__ = [
    "INTERRUPT",
    "PROGRESS_STEPS",
    "RERUN",
    "YIELD",
    "LoopConnectionMixin",
    "LoopState",
    "loop_factory",
]

# Steps of SQLite's virtual machine between two looks at the clock, for a
# statement on the loop: ~8 µs of simple steps. Each look is a Python call
# (~0.4 µs): the budget is kept to a few µs for ~5 % of the statement's time
# (measured on a 2M-row count: 264 ms with the handler, 250 ms without).
PROGRESS_STEPS = 1000

# How a statement runs on the loop, once over its budget.
INTERRUPT = "interrupt"  # stop it; it runs again on the worker
YIELD = "yield"  # let the loop run, then go on

RERUN = object()  # what a statement that must run again on the worker returns


class _LeaveTheLoopError(Exception):
    """Raised by a guarded Python function called from a statement on the loop."""


class LoopState:
    """What a statement running on the loop shares with its progress handler and guards.

    One per connection that may run statements on the loop. The loop sets
    ``lane`` while a statement runs there; the worker thread only reads it
    (in guarded functions) while the loop does not use the connection.
    """

    __slots__ = ("budget", "deadline", "handler", "lane", "left", "overran", "stash", "worker", "yielded")

    def __init__(self, budget: float, worker: Worker) -> None:
        self.budget = budget  # seconds
        self.worker = worker
        self.lane: str | None = None  # INTERRUPT or YIELD while a statement runs on the loop
        self.deadline = 0.0
        self.overran = False  # the progress handler stopped the statement
        self.yielded = False  # the progress handler let the loop run
        self.left = False  # a guarded function stopped it
        self.stash: BaseException | None = None  # e.g. CancelledError, re-raised after
        self.handler = self.progress  # bound once: installed for every statement on the loop

    def progress(self) -> int:
        """SQLite's progress handler: nonzero stops the statement."""
        if time.perf_counter() < self.deadline:
            return 0
        if self.lane is INTERRUPT:
            self.overran = True
            return 1
        self.yielded = True
        try:
            await_(asyncio.sleep(0))  # one turn of the loop, then on with the statement
        except BaseException as exc:  # cancelled: stop the statement, raise this after
            self.stash = exc
            return 1
        self.deadline = time.perf_counter() + self.budget
        return 0

    def call_off_loop(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func`` on the worker from inside a statement that runs on the loop."""
        try:
            return self.worker.run(func, *args)
        except Exception:
            raise  # the function's own error: SQLite reports it as usual
        except BaseException as exc:
            self.stash = exc
            raise

    def call(self, func: Callable[..., Any], *args: Any) -> Any:
        """Call a Python function of the user's where it may run."""
        lane = self.lane
        if lane is None:
            return func(*args)
        if lane is INTERRUPT:
            self.left = True
            raise _LeaveTheLoopError
        return self.call_off_loop(func, *args)


def _guard_function(state: LoopState, func: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any) -> Any:
        return state.call(func, *args)

    return guarded


def _guard_aggregate(state: LoopState, cls: type) -> type:
    class Guarded:
        """``cls`` whose instances and methods run where the statement allows."""

        def __init__(self) -> None:
            self._inner = state.call(cls)

        def step(self, *args: Any) -> Any:
            return state.call(self._inner.step, *args)

        def inverse(self, *args: Any) -> Any:
            return state.call(self._inner.inverse, *args)

        def value(self) -> Any:
            return state.call(self._inner.value)

        def finalize(self) -> Any:
            return state.call(self._inner.finalize)

    Guarded.__qualname__ = Guarded.__name__ = f"Guarded{getattr(cls, '__name__', 'Aggregate')}"
    return Guarded


if TYPE_CHECKING:
    # To mypy the mixin extends the sqlite3 connection it is mixed into.
    _ConnectionBase = sqlite3.Connection
else:
    _ConnectionBase = object


class LoopConnectionMixin(_ConnectionBase):
    """A ``sqlite3.Connection`` whose Python functions registered after connecting are guarded.

    The functions Django registers while connecting are called as they are:
    ``_tandem_state`` is set only once Django's connect has returned.
    """

    _tandem_state: LoopState | None = None

    def create_function(self, name, narg, func, *args, **kwargs):
        state = self._tandem_state
        if state is not None and func is not None:
            func = _guard_function(state, func)
        return super().create_function(name, narg, func, *args, **kwargs)

    def create_aggregate(self, name, n_arg, aggregate_class, *args, **kwargs):
        state = self._tandem_state
        if state is not None and aggregate_class is not None:
            aggregate_class = _guard_aggregate(state, aggregate_class)
        return super().create_aggregate(name, n_arg, aggregate_class, *args, **kwargs)

    def create_window_function(self, name, num_params, aggregate_class, *args, **kwargs):
        state = self._tandem_state
        if state is not None and aggregate_class is not None:
            aggregate_class = _guard_aggregate(state, aggregate_class)
        return super().create_window_function(name, num_params, aggregate_class, *args, **kwargs)


_factories: dict[type, type] = {}


def loop_factory(base: type | None = None) -> type | None:
    """The ``factory`` for ``sqlite3.connect()`` of a connection that runs statements on the loop.

    ``base`` is the user's own ``factory`` option, if any; None if it is not
    a ``sqlite3.Connection`` subclass (the connection then hops for every call).
    """
    base = sqlite3.Connection if base is None else base
    if not (isinstance(base, type) and issubclass(base, sqlite3.Connection)):
        return None
    factory = _factories.get(base)
    if factory is None:
        name = "LoopConnection" if base is sqlite3.Connection else f"Loop{base.__name__}"
        factory = _factories[base] = type(name, (LoopConnectionMixin, base), {"__module__": __name__})
    return factory
