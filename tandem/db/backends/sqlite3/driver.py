"""sqlite3 connections driven from the bridge: short statements on the loop, the rest on a worker.

sqlite3 does its work - file I/O, locking, waiting for other writers - in
blocking C calls, and a simple statement takes a few µs, less than handing
it to another thread (a *hop*, 40-150 µs). So inside ``tandem.native()`` a
connection runs a statement **on the loop thread** when SQLite guarantees
it can be stopped or paused, and hands it to the connection's **worker
thread** (``tandem.db.threaded``) when it may block: a commit (its
``fsync``), a wait for another connection's lock, a long statement, a
Python function of yours. Outside the bridge every call runs directly in the
calling thread, as with Django's stock backend.

**Statements on the loop.** Each runs under a progress handler that looks at
the clock every ``PROGRESS_STEPS`` steps of SQLite's virtual machine, and
with a busy timeout of 0 (a lock held elsewhere fails the statement at once
instead of sleeping in C). What happens at the budget
(``OPTIONS["loop_budget_ms"]``) depends on what the statement may have done:

* **reads** (``SELECT``, ``VALUES``, ``EXPLAIN``, a ``WITH`` that writes
  nothing) are *interrupted* and run again on the worker. An interrupted
  read changes nothing, in a transaction or not;
* **writes inside a transaction** (``INSERT``, ``UPDATE``, ``DELETE``,
  savepoints) *yield* the loop and go on: the progress handler awaits one
  loop turn from inside the statement (a greenlet switch; the C stack of the
  statement waits with the bridge greenlet) every budget. They cannot be
  interrupted: SQLite answers an interrupted write by rolling back the whole
  transaction, not the statement;
* ``BEGIN`` runs on the loop: it only takes a lock.

A statement that fails on the loop because of a lock (``database is
locked``), because it ran past the budget, or because it called a Python
function registered after connecting (see below), failed before changing
anything; it runs again on the worker, with the real busy timeout.
Statements known to run long (stopped, or paused, at the budget) are
remembered (``LONG_MEMORY``, by SQL text) and go to the worker straight away
until they run short there: a long write in a transaction runs there whole.

**Statements on the worker**: writes outside a transaction and ``COMMIT``
(each commit writes the journal and calls ``fsync``: 0.2 ms on this
project's machine, far more on a busy disk), ``ROLLBACK``, ``PRAGMA`` and
DDL, ``executescript``, fetching rows past the first ``PREFETCH_ROWS`` of a
statement, and every call on a connection that does not run statements on
the loop: budget 0, a shared-cache or in-memory database (a shared cache
serialises statements with a mutex that a statement on the loop would wait
for), a connection opened outside the bridge.

**Python functions.** A function, aggregate or window function registered
after Django's connect (``create_function`` in a ``connection_created``
receiver, say) may sleep or do I/O, which no progress handler can stop. On
the loop, a read calling one stops at its first call and runs again on the
worker; a write in a transaction, which cannot be stopped, hands each call
to the worker thread and awaits it. Django's own functions (date
arithmetic, regular expressions...) run where their statement runs.

**Threads.** One thread uses a connection at a time. The loop runs a
statement only while the worker is idle: each hop is awaited to its end,
and a call a cancelled task abandoned keeps ``worker.busy`` true, which
sends every later call to the worker, behind it. The busy timeout is 0
between calls; a call on the worker sets the real one for its duration.
Django opens sqlite3 connections with ``check_same_thread=False``.

What the worker adds, as before:

* **Few thread hops.** A statement that returns rows brings its first
  ``PREFETCH_ROWS`` rows back with ``execute()``; fetching rows already
  fetched and closing a finished cursor need no hop.
* **Cancellable lock waits.** SQLite's busy timeout sleeps inside the C
  library and ``interrupt()`` does not wake it, so a task cancelled while
  waiting for another writer would hang until the lock came free. Statements
  run outside a transaction (``BEGIN IMMEDIATE``, autocommit writes) wait in
  short slices instead, checking for cancellation between them, for as long
  as the connection's own busy timeout: SQLite's documentation allows
  retrying them. Statements inside a transaction keep SQLite's own wait.
* **Shared-cache table locks are waited for too.** Connections to a
  shared-cache database (Django's in-memory test database) lock tables
  against each other and SQLite reports a conflict at once, busy timeout or
  not. Those statements are retried, in a transaction or not, until the busy
  timeout, as ``sqlite3_unlock_notify()`` would do.
* **Closing never blocks the loop**: the pool closes connections on their
  worker (``close_later``).
* **A cursor left mid-statement takes its connection with it.** sqlite3
  resets a statement when its cursor is closed or freed, under the
  connection's mutex. A task cancelled with a cursor whose statement is
  mid-way (rows not all read, a call abandoned: Django closes a cursor on
  an ``Exception``, not on ``CancelledError``) leaves it to the garbage
  collector, on the loop thread; had the connection gone back to the pool,
  that would wait for the next user's statement on the worker. So the pool
  closes such a connection instead (``left_mid_statement``), on its worker,
  and those cursors' driver objects go there with it.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tandem.bridge import await_, in_bridge
from tandem.db.threaded import ThreadedConnection, ThreadedCursor, Worker

__all__ = ["SQLiteConnection", "SQLiteCursor", "loop_factory", "statement_kind"]

# Rows fetched together with execute(): Django reads results in chunks of
# this size (GET_ITERATOR_CHUNK_SIZE), so most queries end in one chunk.
PREFETCH_ROWS = 100
# Longest uninterruptible wait for a lock, in ms: bounds how long a
# cancelled task waits for its connection.
BUSY_SLICE_MS = 50
# Our own pause between tries when SQLite reports a lock it does not wait
# for (a shared-cache table lock): grows from the first to the last, in s.
LOCKED_PAUSES = (0.001, 0.002, 0.005, 0.01, 0.02)
# Steps of SQLite's virtual machine between two looks at the clock, for a
# statement on the loop: ~8 µs of simple steps. Each look is a Python call
# (~0.4 µs): the budget is kept to a few µs for ~5 % of the statement's time
# (measured on a 2M-row count: 264 ms with the handler, 250 ms without).
PROGRESS_STEPS = 1000
# SQL texts remembered per database as running past the budget (stopped or
# paused: they go to the worker at once), and as calling Python functions.
LONG_MEMORY = 512

# Extended result codes that mean "another connection holds a lock": worth
# waiting out. Not SQLITE_BUSY_SNAPSHOT (a stale read snapshot never becomes
# fresh) nor plain SQLITE_LOCKED (a conflict inside this very connection).
_SQLITE_BUSY = 5
SQLITE_LOCKED_SHAREDCACHE = 262
_RETRYABLE_CODES = frozenset({_SQLITE_BUSY, 261, 773, SQLITE_LOCKED_SHAREDCACHE})  # + BUSY_RECOVERY, _TIMEOUT


def _lock_conflict(exc: sqlite3.OperationalError) -> int | None:
    """The result code if ``exc`` means "another connection holds the lock", else None."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # Python < 3.11 has no result codes; the message must do
        return _SQLITE_BUSY if str(exc) == "database is locked" else None
    return code if code in _RETRYABLE_CODES else None


# -- what a statement may do, from its text ------------------------------------------

READ = "read"  # changes nothing: may be interrupted anywhere
WRITE = "write"  # INSERT, UPDATE, DELETE, REPLACE, or a WITH that ends in one
BEGIN = "begin"  # takes a lock, changes nothing
SAVEPOINT = "savepoint"  # SAVEPOINT, RELEASE, ROLLBACK TO: inside a transaction, a write
OTHER = "other"  # COMMIT, ROLLBACK, PRAGMA, DDL, ATTACH, VACUUM...: the worker's

# One character or comment at a time before the word: no nested repetition to backtrack through.
_FIRST_WORD = re.compile(r"(?:\s|\(|--[^\n]*(?:\n|$)|/\*.*?\*/)*([A-Za-z]+)", re.DOTALL)
_WRITE_WORD = re.compile(r"\b(?:INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_ROLLBACK_TO = re.compile(r"ROLLBACK(?:\s+TRANSACTION)?\s+TO\b", re.IGNORECASE)
_KINDS = {
    "SELECT": READ,
    "VALUES": READ,
    "EXPLAIN": READ,  # explains a statement without running it
    "INSERT": WRITE,
    "UPDATE": WRITE,
    "DELETE": WRITE,
    "REPLACE": WRITE,
    "BEGIN": BEGIN,
    "SAVEPOINT": SAVEPOINT,
    "RELEASE": SAVEPOINT,
}

# Kinds by SQL text: the ORM sends the same few texts over and over, and a
# lookup costs a hash of the string. Bounded: cleared when full.
_kinds: dict[str, str] = {}
_MAX_KINDS = 2048


def statement_kind(sql: Any) -> str:
    """``READ``, ``WRITE``, ``BEGIN``, ``SAVEPOINT`` or ``OTHER``, from the statement's text.

    Errs towards caution: a ``WITH`` that names ``INSERT``, ``UPDATE``,
    ``DELETE`` or ``REPLACE`` anywhere (even in a string) is a write.
    """
    kind = _kinds.get(sql) if isinstance(sql, str) else OTHER
    if kind is None:
        kind = _classify(sql)
        if len(_kinds) >= _MAX_KINDS:
            _kinds.clear()
        _kinds[sql] = kind
    return kind


def _classify(sql: str) -> str:
    match = _FIRST_WORD.match(sql)
    if match is None:
        return OTHER
    word = match.group(1).upper()
    if word == "WITH":
        return WRITE if _WRITE_WORD.search(sql) else READ
    if word == "ROLLBACK":
        return SAVEPOINT if _ROLLBACK_TO.match(sql, match.start(1)) else OTHER
    return _KINDS.get(word, OTHER)


# -- the loop's side of a connection ------------------------------------------------------

# How a statement runs on the loop, once over its budget.
INTERRUPT = "interrupt"  # stop it; it runs again on the worker
YIELD = "yield"  # let the loop run, then go on

_RERUN = object()  # what a statement that must run again on the worker returns


class _LeaveTheLoopError(Exception):
    """Raised by a guarded Python function called from a statement on the loop."""


class _Memory:
    """Statements of one database that should not start on the loop."""

    __slots__ = ("calls_python", "long")

    def __init__(self) -> None:
        self.long: dict[str, None] = {}  # ran past the budget; forgotten once short again
        self.calls_python: dict[str, None] = {}  # called a guarded function

    # Worker threads of several connections may change these at once: each
    # step is one dict operation, and a key another thread removed first is fine.
    @staticmethod
    def note(table: dict[str, None], sql: str) -> None:
        if len(table) >= LONG_MEMORY:
            try:
                table.pop(next(iter(table)), None)  # the oldest
            except (StopIteration, RuntimeError):  # emptied, or changed, meanwhile
                pass
        table[sql] = None


_memories: dict[str, _Memory] = {}


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


class CountingWorker(Worker):
    """A worker that counts the calls handed to its thread (``hops``, for tests and benchmarks)."""

    def __init__(self) -> None:
        super().__init__()
        self.hops = 0

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``Worker.run``, counted when it hops.

        A call awaited to its end leaves the thread idle: forgetting it makes
        ``busy``, asked before every statement that may run on the loop, a
        test of None instead of a look at a future under its lock.
        """
        if not in_bridge() or self._stopped:
            return fn(*args, **kwargs)
        self.hops += 1
        result = super().run(fn, *args, **kwargs)  # if it raises, the call may still run
        self._last = None
        return result


def _close_all(connections: list[sqlite3.Connection]) -> None:
    # On the worker: close and let go of driver connections nobody will use.
    for raw in connections:
        try:
            raw.close()
        except sqlite3.Error:
            pass
    connections.clear()


# -- cursor -----------------------------------------------------------------------------


class _HandedOverCursor:
    """What a ``SQLiteCursor`` holds once its driver cursor went to the worker to be closed."""

    description = None
    rowcount = -1
    lastrowid = None

    def close(self) -> None:
        """Closed already."""

    def __getattr__(self, name: str) -> Any:
        raise sqlite3.ProgrammingError("Cannot operate on a closed cursor.")

    def __setattr__(self, name: str, value: Any) -> None:
        raise sqlite3.ProgrammingError("Cannot operate on a closed cursor.")


_HANDED_OVER = _HandedOverCursor()


class SQLiteCursor(ThreadedCursor):
    """A sqlite3 cursor driven from the bridge with as few thread hops as possible.

    Rows fetched ahead wait in ``_rows``; ``_more`` says whether the
    statement may still have rows the driver has not handed over, and
    ``_read`` whether it is a read the loop ran (closing it early is no I/O).
    This runs for every statement: attributes are plain, and the only ones
    sqlite3 lets you set on a cursor (``arraysize``, ``row_factory``) are
    forwarded by properties.
    """

    __setattr__ = object.__setattr__  # type: ignore[assignment]  # plain attributes, not the driver's

    def __init__(self, raw: sqlite3.Cursor, conn: SQLiteConnection) -> None:
        self._raw = raw
        self._worker = conn.worker
        self._conn = conn
        self._rows: deque = deque()
        self._more = False
        self._read = False

    @property
    def arraysize(self) -> int:
        """sqlite3's ``arraysize``: rows ``fetchmany()`` returns by default."""
        return self._raw.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._raw.arraysize = value

    @property
    def row_factory(self) -> Any:
        """sqlite3's ``row_factory``."""
        return self._raw.row_factory

    @row_factory.setter
    def row_factory(self, value: Any) -> None:
        self._raw.row_factory = value

    def execute(self, sql: str, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """Run a statement; in the bridge on the loop or the worker, with its first rows."""
        rows = self._rows
        if rows:
            rows.clear()
        conn = self._conn
        if not in_bridge():
            self._more, self._read = True, False
            if conn._loop is None:
                self._raw.execute(sql, *args, **kwargs)  # Django's stock path
            else:
                conn.direct(self._raw.execute, sql, *args, **kwargs)
            return self
        kind = statement_kind(sql)
        lane = conn.lane_for(kind, sql)
        fetched = _RERUN
        try:
            if lane is not None:
                # Until it returns, the statement may hold rows (or still run, if
                # we are cancelled): close() must then go through the worker.
                self._more, self._read = True, False
                fetched = conn.on_loop(lane, sql, self._prefetch, sql, args, kwargs)
            if fetched is _RERUN:  # wait_for_locks sets the busy timeout itself: no hop()
                self._more, self._read = True, False
                fetched = conn.worker.run(self._execute_and_prefetch, sql, args, kwargs)
            else:
                self._read = kind is READ
        except BaseException:
            self._note_if_mid_statement()
            raise
        if fetched:
            rows.extend(fetched)  # type: ignore[arg-type]  # rows, once not _RERUN
            if len(fetched) == PREFETCH_ROWS:  # type: ignore[arg-type]  # the driver may hold more
                self._more = True
                conn.note_mid_statement(self)
                return self
        self._more = False
        return self

    def _prefetch(self, sql: str, args: tuple, kwargs: dict) -> list | None:
        # None: the statement returns no rows.
        self._raw.execute(sql, *args, **kwargs)
        if self._raw.description is None:
            return None
        return self._raw.fetchmany(PREFETCH_ROWS)

    def _execute_and_prefetch(self, sql: str, args: tuple, kwargs: dict) -> list | None:
        # On the worker.
        return self._conn.wait_for_locks(self._prefetch, (sql, args, kwargs), {})

    def executemany(self, sql: str, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """Run a statement for each parameter set (no rows come back)."""
        self._rows.clear()
        self._more = True
        self._read = False
        conn = self._conn
        if not in_bridge():
            conn.direct(self._raw.executemany, sql, *args, **kwargs)
        else:
            lane = conn.lane_for(WRITE if statement_kind(sql) is WRITE else OTHER, sql)
            done = _RERUN
            try:
                if lane is not None:
                    done = conn.on_loop(lane, sql, self._raw.executemany, sql, *args, **kwargs)
                if done is _RERUN:
                    conn.hop(self._raw.executemany, sql, *args, **kwargs)
            except BaseException:
                self._note_if_mid_statement()
                raise
        self._more = False
        return self

    def executescript(self, script: str) -> SQLiteCursor:
        """Run several statements (on the worker in the bridge)."""
        self._rows.clear()
        self._more = False
        self._conn.hop(self._raw.executescript, script)
        return self

    def fetchone(self) -> Any:
        """The next row, or None."""
        if self._rows:
            return self._rows.popleft()
        if not self._more:
            return None
        row = self._hop(self._raw.fetchone)
        self._more = row is not None
        return row

    def fetchmany(self, size: int | None = None) -> list:
        """Up to ``size`` rows (default ``arraysize``); fewer only at the end."""
        if size is None:
            size = self._raw.arraysize
        ahead = self._rows
        if len(ahead) <= size:
            rows = list(ahead)
            ahead.clear()
        else:
            rows = [ahead.popleft() for _ in range(size)]
        if len(rows) < size and self._more:
            wanted = size - len(rows)
            fetched = self._hop(self._raw.fetchmany, wanted)
            self._more = len(fetched) == wanted
            rows.extend(fetched)
        return rows

    def fetchall(self) -> list:
        """The remaining rows."""
        rows = list(self._rows)
        self._rows.clear()
        if self._more:
            rows.extend(self._hop(self._raw.fetchall))
            self._more = False
        return rows

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def close(self) -> None:
        """Close; a finished statement, or a read left early, closes without a hop."""
        self._rows.clear()
        if not self._more:
            # The driver has reset a finished statement already: no SQLite call.
            self._raw.close()
        elif self._read and not self._worker.busy:
            # Ending a read only lets go of its snapshot, and no call of the
            # worker's holds the connection (its mutex) meanwhile.
            self._raw.close()
            self._more = False
        else:
            # Only once closed is the statement finished: a close abandoned
            # by a cancelled task leaves it mid-way.
            self._hop(self._raw.close)
            self._more = False

    def _hop(self, call: Callable[..., Any], *args: Any) -> Any:
        # A call on the worker for a statement under way (fetching, closing).
        try:
            return self._conn.hop(call, *args)
        except BaseException:
            self._note_if_mid_statement()
            raise

    def _note_if_mid_statement(self) -> None:
        # A call failed or was abandoned: the statement may be left mid-way.
        if self._more:
            self._conn.note_mid_statement(self)

    def hand_over(self) -> sqlite3.Cursor:
        """Give up the driver's cursor, for the connection to close it on its worker.

        From then on this cursor is closed: ``close()`` does nothing, and
        nothing else of the loop's touches the driver's cursor again.
        """
        raw, self._raw = self._raw, _HANDED_OVER
        self._rows.clear()
        self._more = False
        return raw


# -- connection ----------------------------------------------------------------------------


class SQLiteConnection(ThreadedConnection):
    """A sqlite3 connection with its own worker thread (see the module docstring)."""

    _own = ThreadedConnection._own | {
        "_interrupts",
        "_busy_ms",
        "_rest_ms",
        "_pragma",
        "_loop",
        "_memory",
        "_mid_statement",
    }

    def __init__(self, raw: sqlite3.Connection, worker: Worker) -> None:
        super().__init__(raw, worker)
        object.__setattr__(self, "_interrupts", 0)  # interrupt() calls so far
        # Cursors that may have left their statement mid-way (a WeakSet, made on first use).
        object.__setattr__(self, "_mid_statement", None)
        object.__setattr__(self, "_busy_ms", None)  # the busy timeout, read lazily
        object.__setattr__(self, "_rest_ms", None)  # the busy timeout between calls: 0 if _loop
        object.__setattr__(self, "_pragma", None)  # a cursor for PRAGMA busy_timeout
        object.__setattr__(self, "_loop", None)  # a LoopState if statements may run on the loop
        object.__setattr__(self, "_memory", None)  # the database's _Memory, with _loop

    @classmethod
    def open(
        cls,
        connect: Callable[[], sqlite3.Connection],
        interrupt=None,
        *,
        loop_budget: float = 0.0,
        database: str = "",
    ) -> SQLiteConnection:
        """Run ``connect()`` (Django's own, on the worker in the bridge) and wrap it.

        With ``loop_budget`` (seconds) > 0, a connection opened in the bridge
        whose driver connection was made with ``loop_factory()`` runs short
        statements on the loop; ``database`` names what it remembers them by.
        ``interrupt`` is ignored: ``SQLiteConnection.interrupt`` is always used.
        """
        worker = CountingWorker()
        made: list[sqlite3.Connection] = []

        def connect_and_keep() -> sqlite3.Connection:
            made.append(connect())
            return made[-1]

        try:
            raw = worker.run(connect_and_keep)
            conn = cls(raw, worker)
            if loop_budget > 0 and in_bridge() and isinstance(raw, LoopConnectionMixin):
                worker.run(conn._enable_loop, loop_budget, database)
        except BaseException:
            # Failed or cancelled once the driver connection was made (or
            # while it was being made): close it on the worker, after that
            # call, rather than leave it to be freed, and so closed, on the loop.
            if made or worker.busy:
                worker.defer(_close_all, made)
            worker.stop()
            raise
        worker.interrupt = conn.interrupt
        return conn

    def _enable_loop(self, budget: float, database: str) -> None:
        # On the worker, once Django's connect has returned: its functions
        # are registered already, unguarded; the busy timeout goes to 0
        # between calls, and each call that may wait sets it for its time.
        state = LoopState(budget, self.worker)
        self._busy_timeout_ms()
        self._set_busy_timeout(0)
        object.__setattr__(self, "_rest_ms", 0)
        object.__setattr__(self, "_loop", state)
        object.__setattr__(self, "_memory", _memories.setdefault(database, _Memory()))
        self._raw._tandem_state = state

    # -- calls that stay on the calling thread ---------------------------------
    def cursor(self, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """A cursor: creating one does no I/O, so no hop."""
        return SQLiteCursor(self._raw.cursor(*args, **kwargs), self)

    def interrupt(self) -> None:
        """Abort the running statement and any lock wait (safe from any thread)."""
        object.__setattr__(self, "_interrupts", self._interrupts + 1)
        self._raw.interrupt()

    @property
    def interrupted(self) -> bool:
        """True once ``interrupt()`` was called.

        The pool does not reuse such a connection: SQLite keeps an interrupt
        pending until none of the connection's statements is running, and a
        cursor left unfinished somewhere would make it fail every statement.
        """
        return self._interrupts > 0

    def note_mid_statement(self, cursor: SQLiteCursor) -> None:
        """Remember ``cursor``: its statement may be mid-way (rows unread, a call abandoned)."""
        cursors = self._mid_statement
        if cursors is None:
            cursors = weakref.WeakSet()
            object.__setattr__(self, "_mid_statement", cursors)
        cursors.add(cursor)

    @property
    def left_mid_statement(self) -> bool:
        """True while a cursor of this connection has a statement neither finished nor closed.

        Rows not all fetched, or a call a cancelled task abandoned. The pool
        does not reuse such a connection: sqlite3 resets a statement when its
        cursor is closed or freed, which takes the connection's mutex, so a
        cursor the garbage collector frees later on the loop thread would
        wait for whatever the worker then runs for the connection's next
        user, a one-second query say.
        """
        cursors = self._mid_statement
        return cursors is not None and any(cursor._more for cursor in cursors)

    @property
    def runs_on_loop(self) -> bool:
        """True if short statements of this connection run on the loop thread."""
        return self._loop is not None

    @property
    def hops(self) -> int:
        """Calls handed to the worker thread from the bridge so far (connecting included)."""
        return self.worker.hops

    def __setattr__(self, name: str, value: Any) -> None:
        # Django sets isolation_level on every connect() (autocommit on): it
        # only does I/O (a COMMIT) inside a transaction, so skip the hop.
        if name == "isolation_level" and not self._raw.in_transaction:
            setattr(self._raw, name, value)
        elif name in self._own:
            object.__setattr__(self, name, value)
        else:
            # sqlite3: isolation_level / autocommit setters may run BEGIN or COMMIT.
            self.hop(setattr, self._raw, name, value)

    # -- where a statement runs ---------------------------------------------------
    def lane_for(self, kind: str, sql: str) -> str | None:
        """How a statement of ``kind`` runs on the loop now, or None: on the worker."""
        state = self._loop
        if state is None or self.worker.busy or self._interrupts:
            return None
        memory = self._memory
        if kind is READ:
            if sql in memory.long or sql in memory.calls_python:
                return None
            return INTERRUPT
        if kind is BEGIN:
            return INTERRUPT
        if kind is WRITE or kind is SAVEPOINT:
            # Outside a transaction a write commits (the worker's job);
            # inside one it may be paused, never stopped. One that ran long
            # is not started on the loop again: its work would all be the loop's.
            if not self._raw.in_transaction or sql in memory.long:
                return None
            return YIELD
        return None

    def on_loop(self, lane: str, sql: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(*args)`` on the loop, or ``_RERUN`` if it must run again on the worker."""
        state = self._loop
        raw = self._raw
        state.lane = lane
        in_transaction = raw.in_transaction
        state.deadline = time.perf_counter() + state.budget
        raw.set_progress_handler(state.handler, PROGRESS_STEPS)
        try:
            return call(*args, **kwargs)
        except sqlite3.Error as exc:
            stash = state.stash
            if stash is not None:
                state.stash = None
                raise stash from None
            if state.overran:
                _Memory.note(self._memory.long, sql)
            elif state.left:
                _Memory.note(self._memory.calls_python, sql)
            elif not (isinstance(exc, sqlite3.OperationalError) and _lock_conflict(exc) is not None):
                raise
            # Stopped, or failed taking a lock, before changing anything: SQLite
            # rolls back nothing for a read, or for a write that never began.
            # Should a statement taken for a read have written after all, its
            # interrupt rolled back the whole transaction: say so, never run on.
            if in_transaction and not raw.in_transaction:
                raise sqlite3.OperationalError(
                    "tandem stopped a statement on the event loop and SQLite rolled back the "
                    f"whole transaction: {sql[:200]!r} (set OPTIONS['loop_budget_ms'] to 0 "
                    "to run every statement on the worker thread)"
                ) from exc
            return _RERUN
        finally:
            raw.set_progress_handler(None, 0)
            if state.yielded:
                _Memory.note(self._memory.long, sql)
            state.lane = None
            state.overran = state.left = state.yielded = False
            state.stash = None

    def hop(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(*args)`` on the worker in the bridge (else right here), with the real busy timeout."""
        if self._rest_ms is None or self._rest_ms == self._busy_ms:
            return self.worker.run(call, *args, **kwargs)
        return self.worker.run(self._with_busy_timeout, call, args, kwargs)

    def direct(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call(*args)`` in the calling thread, outside the bridge."""
        if self._loop is None:
            return call(*args, **kwargs)  # Django's stock path
        return self._with_busy_timeout(call, args, kwargs)

    def _with_busy_timeout(self, call: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        self._set_busy_timeout(self._busy_ms)
        try:
            return call(*args, **kwargs)
        finally:
            self._set_busy_timeout(self._rest_ms)

    # -- calls that may block ----------------------------------------------------
    def execute(self, sql: str, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """sqlite3's shortcut: a new cursor that has run ``sql``."""
        return self.cursor().execute(sql, *args, **kwargs)

    def executemany(self, sql: str, *args: Any, **kwargs: Any) -> SQLiteCursor:
        """sqlite3's shortcut: a new cursor that has run ``sql`` for each parameter set."""
        return self.cursor().executemany(sql, *args, **kwargs)

    def commit(self) -> None:
        """Commit, on the worker in the bridge (waiting out shared-cache table locks)."""
        if in_bridge():
            self.worker.run(self.wait_for_locks, self._raw.commit, (), {})
        else:
            self.direct(self._raw.commit)

    def rollback(self) -> None:
        """Roll back, on the worker in the bridge."""
        self.hop(self._raw.rollback)

    def executescript(self, script: str) -> SQLiteCursor:
        """sqlite3's shortcut: run several statements."""
        return self.cursor().executescript(script)

    def backup(self, target: Any, **kwargs: Any) -> None:
        """Copy this database into ``target`` (a sqlite3 connection)."""
        target = getattr(target, "raw", target)
        self.hop(self._raw.backup, target, **kwargs)

    def iterdump(self, *args: Any, **kwargs: Any):
        """The database as SQL statements (read on the worker, all at once)."""
        return iter(self.hop(lambda: list(self._raw.iterdump(*args, **kwargs))))

    def load_extension(self, *args: Any, **kwargs: Any) -> None:
        """Load a SQLite extension (reads a shared library)."""
        self.hop(self._raw.load_extension, *args, **kwargs)

    def close_later(self) -> None:
        """Close on the worker after any call it is running; never wait for it.

        For the pool: the loop must not block on a connection a cancelled
        call may still hold, nor on the WAL checkpoint that closing the last
        connection to a database performs. Cursors left mid-statement are
        closed there first, and their driver cursors leave the loop's hands
        (``SQLiteCursor.hand_over``): freed on the loop before that, each
        would wait for the worker.
        """
        left = self._take_mid_statement()
        try:
            self.worker.defer(self._close_quietly, left)
        except RuntimeError:  # the interpreter is exiting: no new threads
            self._close_quietly(left)
        finally:
            self.worker.stop()

    def _take_mid_statement(self) -> list[sqlite3.Cursor]:
        cursors = self._mid_statement
        if not cursors:
            return []
        object.__setattr__(self, "_mid_statement", None)
        return [cursor.hand_over() for cursor in list(cursors) if cursor._more]

    def _close_quietly(self, left: list[sqlite3.Cursor] | None = None) -> None:
        # Statements first: closed with the connection, sqlite3 would leave
        # them to whoever frees their cursors, the loop perhaps.
        for raw in left or ():
            try:
                raw.close()
            except sqlite3.Error:
                pass
        if left:
            left.clear()  # the last references, dropped on this thread
        try:
            self._raw.close()
        except sqlite3.Error:  # broken already: nothing left to close
            pass

    # -- on the worker -----------------------------------------------------------
    def wait_for_locks(self, call: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        """Run ``call``, waiting out other connections' locks as described above.

        Runs on the worker, for calls made inside the bridge.
        """
        raw = self._raw
        real = self._busy_timeout_ms()
        rest = real if self._rest_ms is None else self._rest_ms
        sliced = not raw.in_transaction and real > BUSY_SLICE_MS
        wait = BUSY_SLICE_MS if sliced else real
        if wait != rest:
            self._set_busy_timeout(wait)
        try:
            return self._retry_on_lock(call, args, kwargs, sliced)
        finally:
            if wait != rest:
                self._set_busy_timeout(rest)

    def _retry_on_lock(self, call: Callable[..., Any], args: tuple, kwargs: dict, sliced: bool) -> Any:
        started = time.monotonic()
        seen = self._interrupts
        pauses = iter(LOCKED_PAUSES)
        memory = self._memory
        sql = args[0] if memory is not None and args and isinstance(args[0], str) else None
        long = memory.long if sql is not None else {}
        while True:
            try:
                result = call(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                code = _lock_conflict(exc)
                if code is None:
                    raise
                if code != SQLITE_LOCKED_SHAREDCACHE and not (sliced and not self._raw.in_transaction):
                    raise  # SQLite waited its whole busy timeout already, or must not retry
                if time.monotonic() - started >= self._busy_timeout_ms() / 1000:
                    raise
                if self._interrupts != seen:
                    raise sqlite3.OperationalError("interrupted") from exc
                if code == SQLITE_LOCKED_SHAREDCACHE:  # SQLite did not wait: pause ourselves
                    time.sleep(next(pauses, LOCKED_PAUSES[-1]))
            else:
                if sql in long and time.monotonic() - started < self._loop.budget / 2:
                    long.pop(sql, None)  # short again: the loop may try it next time
                return result

    def _busy_timeout_ms(self) -> int:
        if self._busy_ms is None:
            pragma = self._raw.cursor()
            object.__setattr__(self, "_pragma", pragma)
            object.__setattr__(self, "_busy_ms", pragma.execute("PRAGMA busy_timeout").fetchall()[0][0])
        return self._busy_ms

    def _set_busy_timeout(self, ms: int) -> None:
        # Read to the end: a statement left unfinished would keep an
        # interrupt() pending for every later statement (SQLite clears it
        # only when no statement of the connection is running).
        self._pragma.execute(f"PRAGMA busy_timeout = {int(ms)}").fetchall()
