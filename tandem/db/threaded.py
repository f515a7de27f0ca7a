"""Blocking DB-API drivers, one worker thread per connection, awaited in the bridge.

Some drivers only block: sqlite3 (a C library doing file I/O) and mysqlclient
(libmariadb). Inside the bridge their calls must not run on the loop thread,
so each connection gets a worker thread of its own; the greenlet hands the
call to it and awaits the result. One thread per connection keeps the
driver's own rule (a connection is used by one thread at a time) and costs
one thread hop per call, not per query plan.

Outside the bridge (sync code: WSGI, management commands, tests) calls run
directly in the calling thread, exactly as without tandem.

``ThreadedConnection`` and ``ThreadedCursor`` wrap the driver's objects and
route every call that may block; plain attributes pass through.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from tandem.bridge import await_, in_bridge

__all__ = ["ThreadedConnection", "ThreadedCursor", "Worker", "current_thread_is_worker"]


# Seconds between interrupts of an abandoned call that has not stopped yet.
INTERRUPT_REPEAT = 0.1


class Worker:
    """The thread that runs one connection's blocking calls, one at a time."""

    def __init__(self, interrupt: Callable[[], None] | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tandem-db")
        # Asks the driver to abandon the running call (from another thread).
        self.interrupt = interrupt
        # The last call handed to the thread; calls run in order, so once it
        # is done the thread is idle.
        self._last: Future | None = None
        self._stopped = False

    @property
    def busy(self) -> bool:
        """True while a call handed to the thread has not finished (e.g. one abandoned twice)."""
        last = self._last
        return last is not None and not last.done()

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn``: on the worker thread if in the bridge, else right here."""
        if not in_bridge() or self._stopped:
            # Stopped: the connection is closed, and a closed driver
            # connection answers at once with the driver's own error.
            return fn(*args, **kwargs)
        done = self._last = self._executor.submit(fn, *args, **kwargs)
        try:
            return await_(asyncio.wrap_future(done))
        except asyncio.CancelledError:
            self._abandon(done)
            raise

    def _abandon(self, done: Future) -> None:
        # Our task was cancelled mid-call. A call still queued never runs.
        # One the thread has started must be stopped on the driver's side;
        # then we wait until the connection is ours again, so nobody else
        # uses it while the thread does. The interrupt is repeated: one that
        # lands between the thread picking the call up and the driver
        # starting the statement is lost (SQLite ignores an interrupt while
        # no statement runs), and the statement would run to its end.
        if done.cancel() or done.done():
            return  # never ran, or finished before the loop heard of it: nothing to stop
        finished = asyncio.wrap_future(done)
        # The wrapper learns the outcome a loop turn after the thread: whenever
        # that is, its error (e.g. "interrupted") is expected. Retrieve it, so
        # the loop does not log "Future exception was never retrieved".
        finished.add_done_callback(_retrieve)
        while not done.done():
            if self.interrupt is not None:
                try:
                    self.interrupt()
                except Exception:  # an interrupt that fails leaves the call to finish
                    pass
            try:
                await_(asyncio.wait([finished], timeout=INTERRUPT_REPEAT))
            except BaseException:  # cancelled again: the caller re-raises the first
                break

    def defer(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn`` on the thread after its current calls; do not wait for it."""
        if self._stopped:
            fn(*args)
            return
        self._last = self._executor.submit(fn, *args)

    def stop(self) -> None:
        """Let the thread end once its current call returns."""
        self._stopped = True
        self._executor.shutdown(wait=False)


class ThreadedCursor:
    """A driver cursor whose blocking methods run on the connection's worker."""

    def __init__(self, raw: Any, worker: Worker) -> None:
        self._raw = raw
        self._worker = worker

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Run a statement."""
        result = self._worker.run(self._raw.execute, *args, **kwargs)
        return self if result is self._raw else result

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        """Run a statement for each parameter set."""
        result = self._worker.run(self._raw.executemany, *args, **kwargs)
        return self if result is self._raw else result

    def fetchone(self) -> Any:
        """Fetch the next row."""
        return self._worker.run(self._raw.fetchone)

    def fetchmany(self, size: int | None = None) -> list:
        """Fetch up to ``size`` rows."""
        if size is None:
            return self._worker.run(self._raw.fetchmany)
        return self._worker.run(self._raw.fetchmany, size)

    def fetchall(self) -> list:
        """Fetch the remaining rows."""
        return self._worker.run(self._raw.fetchall)

    def close(self) -> None:
        """Close the cursor."""
        self._worker.run(self._raw.close)

    def __iter__(self):
        while rows := self.fetchmany(100):
            yield from rows

    def __enter__(self) -> ThreadedCursor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_raw", "_worker"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._raw, name, value)


class ThreadedConnection:
    """A driver connection whose blocking methods run on its own worker thread."""

    _own = frozenset({"_raw", "worker"})

    def __init__(self, raw: Any, worker: Worker) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "worker", worker)

    @classmethod
    def open(cls, connect: Callable[[], Any], interrupt: Callable[[Any], None] | None = None):
        """Open a connection with ``connect()``, on a new worker when in the bridge."""
        worker = Worker()
        try:
            raw = worker.run(connect)
        except BaseException:
            worker.stop()
            raise
        if interrupt is not None:
            worker.interrupt = lambda: interrupt(raw)
        return cls(raw, worker)

    @property
    def raw(self) -> Any:
        """The driver's own connection object."""
        return self._raw

    def cursor(self, *args: Any, **kwargs: Any) -> ThreadedCursor:
        """A cursor; creating one may block (mysqlclient), so it runs on the worker."""
        return ThreadedCursor(self.worker.run(self._raw.cursor, *args, **kwargs), self.worker)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """sqlite3's shortcut: a cursor that has run the statement."""
        return ThreadedCursor(self.worker.run(self._raw.execute, *args, **kwargs), self.worker)

    def commit(self) -> None:
        """Commit."""
        self.worker.run(self._raw.commit)

    def rollback(self) -> None:
        """Roll back."""
        self.worker.run(self._raw.rollback)

    def close(self) -> None:
        """Close the connection and let its worker thread end."""
        try:
            self.worker.run(self._raw.close)
        finally:
            self.worker.stop()

    def close_now(self) -> None:
        """Close without waiting on the worker: for pools closing with their loop.

        If the worker still runs a call (one whose task gave up waiting), the
        close is queued behind it: closing under a running call would free
        the driver's state while it is in use.
        """
        try:
            if self.worker.busy:
                self.worker.defer(self._raw.close)
            else:
                self._raw.close()
        except Exception:  # already broken: nothing left to close
            pass
        finally:
            self.worker.stop()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._own:
            object.__setattr__(self, name, value)
        else:
            # sqlite3: isolation_level / autocommit setters may run BEGIN or
            # COMMIT, so they are calls like any other.
            self.worker.run(setattr, self._raw, name, value)


def current_thread_is_worker() -> bool:
    """True on a tandem worker thread (for tests and assertions)."""
    return threading.current_thread().name.startswith("tandem-db")


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
