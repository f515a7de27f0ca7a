"""Query counting across tasks: ``assertNumQueries`` counts every task's queries.

Django counts queries (``assertNumQueries``, ``CaptureQueriesContext``,
pytest-django's ``django_assert_num_queries``) on one wrapper: it forces its
debug cursor on and reads its ``queries_log``. Outside a test transaction
each task has a wrapper of its own, so the queries of the tasks a test
starts would go uncounted. While a counting block is open for a tandem
alias, every task's wrapper of that alias (and a thread's, for code the
block started: ``sync_to_async`` copies its context) logs its queries and
adds them to the counted wrapper's log too, except what a new connection
runs while it is set up (Django connects its wrapper before it counts). No
block open: nothing is logged that Django would not log.

``CaptureQueriesContext`` (and so ``assertNumQueries``) also gets
``__aenter__``/``__aexit__``: ``async with self.assertNumQueries(n):``.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.db import connections

from tandem.db.scope import current_task, is_tandem_alias

__all__ = [
    "CountedLog",
    "capture_aenter",
    "capture_aexit",
    "capture_enter",
    "capture_exit",
    "connect",
    "create_connection",
    "queries_logged",
]


class _Counting:
    """One open counting block of a tandem alias, and the log it reads."""

    __slots__ = ("alias", "sink")

    def __init__(self, alias: str, sink: deque) -> None:
        self.alias = alias
        self.sink = sink


# alias -> the counting blocks open for it, innermost last. Each tuple is
# replaced, never changed in place: loops' threads read it without a lock
# while a test thread opens a block. Writers take the lock.
_counting: dict[str, tuple[_Counting, ...]] = {}
_counting_lock = threading.Lock()
# The counting blocks the current code runs inside: the blocks it entered,
# and those of the code that started it (tasks and sync_to_async copy it).
_entered: ContextVar[tuple[_Counting, ...]] = ContextVar("tandem_counting", default=())


def _counted_here(countings: tuple[_Counting, ...]) -> bool:
    """Whether a query run here belongs to one of ``countings``.

    Any task's does, as in a ``TestCase`` where every task shares the test's
    connection. Code in a plain thread only counts for the blocks it runs
    inside: another thread's queries are no more counted than in stock Django.
    """
    if current_task() is not None:
        return True
    entered = _entered.get()
    return any(counting in entered for counting in countings)


class CountedLog(deque):
    """A tandem wrapper's ``queries_log``, adding its queries to the counting blocks'.

    Django appends each logged query (and ``BEGIN``/``COMMIT``) to the
    wrapper's ``queries_log``. A log swapped in for a while (the MySQL
    backend's, for a connection's set-up queries) is a plain deque, so what
    goes there stays uncounted, as Django would have it.
    """

    __slots__ = ("alias", "connecting")

    def __init__(self, iterable: Any = (), maxlen: int | None = None, alias: str = "") -> None:
        super().__init__(iterable, maxlen)
        self.alias = alias
        # Set while the wrapper connects: see connect().
        self.connecting = False

    def append(self, entry: Any) -> None:
        """Log ``entry``; add it to the open counting blocks it belongs to."""
        deque.append(self, entry)
        countings = _counting.get(self.alias)
        if countings and not self.connecting:
            _feed(self, entry, countings)


def _feed(log: deque, entry: Any, countings: tuple[_Counting, ...]) -> None:
    """Add ``entry``, just logged in ``log``, to the logs of ``countings`` it counts for."""
    everywhere = current_task() is not None  # see _counted_here
    entered = () if everywhere else _entered.get()
    fed = [log]
    for counting in countings:
        sink = counting.sink
        if (everywhere or counting in entered) and not any(sink is done for done in fed):
            # deque.append, not sink.append: this loop already feeds every block
            # that the sink's own log would feed.
            deque.append(sink, entry)
            fed.append(sink)


def _feed_counting_blocks(wrapper: Any) -> None:
    """Give a tandem ``wrapper`` a ``CountedLog`` (with what it has logged so far)."""
    if is_tandem_alias(wrapper.alias) and type(wrapper.queries_log) is deque:
        log = wrapper.queries_log
        wrapper.queries_log = CountedLog(log, log.maxlen, wrapper.alias)


def create_connection(original: Callable[..., Any]) -> Callable[..., Any]:
    """``ConnectionHandler.create_connection``; a tandem wrapper's log feeds counting blocks.

    Applied when ``django.test`` is imported: the wrappers made before (Django
    makes the main thread's as models load) get their log here, once.
    """

    @functools.wraps(original)
    def create(self, alias):
        wrapper = original(self, alias)
        _feed_counting_blocks(wrapper)
        return wrapper

    for wrapper in connections.all(initialized_only=True):
        _feed_counting_blocks(wrapper)
    return create


def connect(original: Callable[..., Any]) -> Callable[..., Any]:
    """``BaseDatabaseWrapper.connect``; what a connection's set-up runs is not counted.

    Django's counting blocks connect their wrapper before they start, so the
    queries a backend (MySQL's ``SET SESSION ...``) or a ``connection_created``
    receiver runs on a new connection are never in the count. Other wrappers
    connect inside the block: a task's takes a pooled connection (and runs
    Django's ``connect()``) at each unit of work that needs one, as often as
    the pool decides. While a block of its alias is open, a task's wrapper
    connects with a log of its own, thrown away after, as the MySQL backend
    does for its set-up queries; a thread's keeps its log, as in stock
    Django, and does not feed the blocks meanwhile.
    """

    @functools.wraps(original)
    def connect_uncounted(self):
        log = self.queries_log
        if type(log) is not CountedLog or self.alias not in _counting:
            return original(self)
        if self.task_owned:
            self.queries_log = deque(maxlen=log.maxlen)
            try:
                return original(self)
            finally:
                self.queries_log = log
        connecting, log.connecting = log.connecting, True
        try:
            return original(self)
        finally:
            log.connecting = connecting

    return connect_uncounted


class _WrappingProperty(property):
    """A property that can say what it wraps (``__wrapped__``)."""

    __wrapped__: property


def queries_logged(original: property) -> property:
    """``BaseDatabaseWrapper.queries_logged``; also true where a counting block counts."""

    def logged(self: Any) -> bool:
        if original.__get__(self, type(self)):  # Django's: force_debug_cursor or DEBUG
            return True
        countings = _counting.get(self.alias)
        return countings is not None and _counted_here(countings)

    wrapping = _WrappingProperty(logged, doc=original.__doc__)
    wrapping.__wrapped__ = original
    return wrapping


def capture_enter(original: Callable[..., Any]) -> Callable[..., Any]:
    """``CaptureQueriesContext.__enter__``; a tandem alias counts every task's queries."""

    @functools.wraps(original)
    def enter(self):
        result = original(self)
        alias = getattr(self.connection, "alias", None)
        if isinstance(alias, str) and is_tandem_alias(alias):
            # The log Django reads the count from, as it is now: a ConnectionProxy
            # resolves anew on each access, and the wrapper's log may be swapped.
            counting = _Counting(alias, self.connection.queries_log)
            self._tandem_counting = counting
            with _counting_lock:
                _counting[alias] = (*_counting.get(alias, ()), counting)
            _entered.set((*_entered.get(), counting))
        return result

    return enter


def capture_exit(original: Callable[..., Any]) -> Callable[..., Any]:
    """``CaptureQueriesContext.__exit__``; stops counting before Django reads the count."""

    @functools.wraps(original)
    def exit_(self, exc_type, exc_value, traceback):
        counting = self.__dict__.pop("_tandem_counting", None)
        if counting is not None:
            with _counting_lock:
                rest = tuple(c for c in _counting.get(counting.alias, ()) if c is not counting)
                if rest:
                    _counting[counting.alias] = rest
                else:
                    _counting.pop(counting.alias, None)
            # Set, not reset with a token: a block may end in another context than
            # it began in (a fixture's); the one it began in no longer matters then,
            # since only open blocks are consulted.
            _entered.set(tuple(c for c in _entered.get() if c is not counting))
        return original(self, exc_type, exc_value, traceback)

    return exit_


async def capture_aenter(self):
    """``async with CaptureQueriesContext(...)`` / ``assertNumQueries(...)``: as ``with``."""
    return self.__enter__()


async def capture_aexit(self, exc_type, exc_value, traceback):
    """The end of ``async with`` on a counting block: as ``with``."""
    return self.__exit__(exc_type, exc_value, traceback)
