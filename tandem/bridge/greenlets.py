"""The greenlet bridge: run synchronous code on the event loop, await its I/O.

``await native(fn)(*args)`` runs the ordinary function ``fn`` inside a fresh
greenlet on the loop thread. When code inside it calls ``await_(awaitable)``,
the greenlet switches back to the coroutine that started it; that coroutine
awaits the awaitable on the loop like any other and switches back in with the
result (or the exception). Django's ORM, unchanged, therefore runs on the loop
thread while the driver's network waits become real ``await``s.

Greenlets are reused: a unit of work (one ``native`` call) borrows a parked
bridge greenlet instead of creating one, which saves ~9 µs per call (see
docs/concepts/bridge.md and ``bench/bridge.py`` for the measurement).
"""

from __future__ import annotations

import functools
import gc
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from greenlet import GreenletExit, getcurrent, greenlet

from tandem.bridge.callables import is_async_callable
from tandem.bridge.settling import current_settling

__all__ = [
    "MAX_IDLE_BRIDGES",
    "OutsideBridgeError",
    "await_",
    "call_native",
    "current_bridge",
    "in_bridge",
    "native",
    "set_blocking_watch",
    "set_unit_hook",
    "unfinished_bridges",
]

P = ParamSpec("P")
R = TypeVar("R")


class OutsideBridgeError(RuntimeError):
    """``await_()`` was called from code that is not running under ``native()``."""


class _Bridge(greenlet):
    """A greenlet that runs synchronous units of work for asyncio tasks.

    Reused: creating a greenlet costs ~9 µs on Python >= 3.11 (a stack mmap),
    switching into a parked one ~0.4 µs. After a unit it parks in ``_idle``.
    """

    def __init__(self) -> None:
        super().__init__(self._serve)
        self.outcome: tuple[bool, Any] | None = None
        _here.bridged = True

    def _serve(self, job: Any) -> None:  # a (fn, args, kwargs) tuple, or _RETIRE
        while job is not _RETIRE:
            self._run(*job)
            # Park holding nothing: the outcome travels as an attribute the
            # driver clears, so no result, exception or frame stays alive here.
            job = None
            job = self.parent.switch(_DONE)

    def retire(self) -> None:
        """End the greenlet now, freeing its saved stack.

        A parked bridge that is merely dropped stays alive in a reference
        cycle (its frame holds it) until the cyclic GC runs: after a burst
        of hundreds of concurrent units that is hundreds of saved stacks.
        """
        self.switch(_RETIRE)

    def _run(self, fn: Callable, args: tuple, kwargs: dict) -> None:
        try:
            self.outcome = (True, fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting task
            self.outcome = (False, exc)


# What a bridge yields when its unit of work is over; anything else it
# yields is an awaitable for the driver to await.
_DONE = object()
# What a parked bridge is sent to make it end.
_RETIRE = object()


class _Here(threading.local):
    """Whether this thread has made a bridge: the only threads worth asking greenlet.

    Asking greenlet for a thread's current greenlet gives that thread a
    greenlet state of its own, and when the thread ends greenlet destroys
    that state on the main thread, as a pending call that runs between two
    bytecodes of whatever runs there: the event loop. Threads come and go
    all the time (Django's per-request executor threads, a connection's
    worker, a MariaDB kill connection) and ask ``in_bridge()`` on every
    statement; in tandem's test suite, where coverage gave every thread a
    state, those destructions held the loop for minutes. Bridges are made on
    loop threads only, so no other thread needs to ask.
    """

    bridged = False


_here = _Here()


class _Idle(threading.local):
    def __init__(self) -> None:
        self.bridges: list[_Bridge] = []


_idle = _Idle()
MAX_IDLE_BRIDGES = 64


def in_bridge() -> bool:
    """Return True when the caller runs inside a ``native()`` call."""
    return _here.bridged and type(getcurrent()) is _Bridge


def unfinished_bridges() -> list[greenlet]:
    """Bridge greenlets in the middle of a unit of work: none once every ``native()`` call is over.

    A diagnostic (it walks every object the garbage collector tracks: slow),
    for tests and debugging sessions that look for sync code left suspended.
    """
    parked = set(map(id, _idle.bridges))
    return [g for g in gc.get_objects() if type(g) is _Bridge and not g.dead and id(g) not in parked]


def current_bridge() -> greenlet | None:
    """The bridge greenlet the caller runs in, or None outside ``native()``.

    Never gives a thread that has made no bridge a greenlet state (see ``_Here``).
    """
    if _here.bridged:
        current = getcurrent()
        if type(current) is _Bridge:
            return current
    return None


def await_(awaitable: Awaitable[R]) -> R:
    """Suspend the synchronous caller until ``awaitable`` completes on the loop.

    Returns its result or raises its exception, at this point in the sync code.
    Only valid inside ``native()``; anywhere else it closes the awaitable (so no
    "never awaited" warning follows) and raises ``OutsideBridgeError``.
    """
    current = current_bridge()
    if current is None:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise OutsideBridgeError(
            "tandem.await_() was called outside the bridge. Run the synchronous "
            "code that needs it through tandem.native(): "
            "`await tandem.native(fn)(*args)`."
        )
    settle = current_settling()
    if settle is not None:
        awaitable = settle.outlast_cancellation(awaitable)
    return current.parent.switch(awaitable)


# A unit of work is one outermost native() call of a task. The scope module
# sets what brackets it (transaction locks, returning connections to the
# pool); the bridge itself knows nothing about databases.
Driver = Callable[[Callable[..., Any], tuple, dict], Awaitable[Any]]
_unit_hook: Callable[[Driver, Callable[..., Any], tuple, dict], Awaitable[Any]] | None = None


def set_unit_hook(hook: Callable[[Driver, Callable[..., Any], tuple, dict], Awaitable[Any]]) -> None:
    """Run every ``native()`` call as ``await hook(drive, fn, args, kwargs)``.

    The hook must ``await drive(fn, args, kwargs)`` exactly once.
    """
    global _unit_hook
    _unit_hook = hook


# The blocking watch: while sync code runs in a bridge it holds the loop.
# When one stretch of it (from a switch into the bridge to the next await_()
# or its return) lasts longer than the threshold, as ``clock()`` counts
# time, ``report(fn, seconds, bridge)`` is called. Set by
# tandem.bridge.blocking; None: not watched.
Report = Callable[[Callable[..., Any], float, greenlet], None]
_watch: tuple[float, Report, Callable[[], float]] | None = None


def set_blocking_watch(
    threshold: float | None, report: Report | None = None, clock: Callable[[], float] = time.perf_counter
) -> None:
    """Call ``report(fn, seconds, bridge)`` when sync code holds the loop > ``threshold`` s."""
    global _watch
    _watch = None if threshold is None or report is None else (threshold, report, clock)


def _switch(bridge: _Bridge, fn: Callable[..., Any], into: Callable[[Any], Any], value: Any) -> Any:
    """``into(value)`` (a switch or throw into ``bridge``), timed when watched."""
    watch = _watch
    if watch is None:
        return into(value)
    threshold, report, clock = watch
    start = clock()
    try:
        return into(value)
    finally:
        held = clock() - start
        if held > threshold:
            report(fn, held, bridge)


async def _drive(fn: Callable[..., R], args: tuple, kwargs: dict) -> R:
    """Run ``fn`` in a bridge greenlet, awaiting whatever it hands us."""
    parked = _idle.bridges
    bridge = parked.pop() if parked else _Bridge()
    bridge.parent = parent = getcurrent()
    # Share the task's Context object: the sync code sees the task's
    # contextvars and its writes are visible to the task afterwards.
    bridge.gr_context = parent.gr_context
    request = _switch(bridge, fn, bridge.switch, (fn, args, kwargs))
    while request is not _DONE:
        try:
            value = await request
        except GeneratorExit:
            # The task is being destroyed, not cancelled: nothing awaits the
            # sync code any more. Unwind it; it may not await again.
            bridge.throw(GreenletExit)
            raise
        except BaseException as exc:  # includes CancelledError
            # Raise it inside the sync code, at its await_() call, so its
            # except/finally blocks run and may still do I/O (a rollback).
            request = _switch(bridge, fn, bridge.throw, exc)
        else:
            request = _switch(bridge, fn, bridge.switch, value)
    ok, value = bridge.outcome  # type: ignore[misc]  # set by _run before the bridge is _DONE
    bridge.outcome = bridge.gr_context = None
    if len(parked) < MAX_IDLE_BRIDGES:
        parked.append(bridge)
    else:
        bridge.retire()
    if ok:
        return value
    try:
        raise value
    finally:
        del value  # no reference cycle through this frame


async def call_native(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``await call_native(fn, *args)`` is ``await native(fn)(*args)``, minus the wrapper."""
    if _unit_hook is None:
        return await _drive(fn, args, kwargs)
    return await _unit_hook(_drive, fn, args, kwargs)


def native(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Turn a synchronous callable into an async one that runs on the loop thread.

    Same shape as ``asgiref.sync.sync_to_async(fn)`` and usable as a decorator;
    ``await native(fn)(*args, **kwargs)`` runs ``fn`` in a bridge greenlet, so
    tandem database backends do their I/O as ``await``s instead of blocking.
    """
    if is_async_callable(fn):
        raise TypeError(f"native() expects a synchronous callable, got coroutine function {fn!r}")

    @functools.wraps(fn)
    async def call_natively(*args: P.args, **kwargs: P.kwargs) -> R:
        return await call_native(fn, *args, **kwargs)

    return call_natively
