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
import queue
import threading
from collections.abc import Callable
from typing import Any

from tandem.bridge import await_, in_bridge

__all__ = ["ThreadedConnection", "ThreadedCursor", "Worker"]


# Seconds between interrupts of an abandoned call that has not stopped yet.
INTERRUPT_REPEAT = 0.1

# A call's states: handed over, picked up by the thread, finished, or
# dropped from the queue before the thread picked it up.
_QUEUED, _RUNNING, _DONE, _DROPPED = range(4)
_STOP = None  # queued by stop(): the thread ends once it gets there


class _Call:
    """One call handed to a worker thread, and, once run, how it went.

    Lighter than ``concurrent.futures.Future`` + ``asyncio.wrap_future``:
    the thread stores the outcome and asks the loop (``call_soon_threadsafe``)
    to hand it to the awaiting task; that hand-over is the only cross-thread
    step. A statement pays this twice per hop, so it matters.
    """

    __slots__ = ("args", "finished", "fn", "kwargs", "loop", "outcome", "state", "waiter")

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict, loop: Any) -> None:
        self.fn, self.args, self.kwargs, self.loop = fn, args, kwargs, loop
        self.state = _QUEUED
        self.outcome: tuple[bool, Any] | None = None
        self.waiter: asyncio.Future | None = None  # the caller's; gets the outcome
        self.finished: asyncio.Future | None = None  # an abandoner's; gets None

    def done(self) -> bool:
        """The thread has finished it, or will never run it."""
        return self.state >= _DONE

    def run(self) -> None:
        """On the worker thread: call, keep the outcome, tell the loop."""
        try:
            self.outcome = (True, self.fn(*self.args, **self.kwargs))
        except BaseException as exc:  # handed to the awaiting task
            self.outcome = (False, exc)
        self.fn = self.args = self.kwargs = None  # type: ignore[assignment]
        self.state = _DONE
        if self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(self.settle)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def settle(self) -> None:
        """On the loop: hand the outcome to whoever still waits."""
        ok, value = self.outcome  # type: ignore[misc]  # set before the loop is told
        waiter, finished = self.waiter, self.finished
        self.outcome = self.waiter = self.finished = None
        if waiter is not None and not waiter.done():  # a cancelled caller's waiter is done
            if ok:
                waiter.set_result(value)
            else:
                waiter.set_exception(value)
        if finished is not None and not finished.done():
            finished.set_result(None)


class Worker:
    """The thread that runs one connection's blocking calls, one at a time."""

    _started = 0  # threads started, for their names

    def __init__(self, interrupt: Callable[[], None] | None = None) -> None:
        # Asks the driver to abandon the running call (from another thread).
        self.interrupt = interrupt
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._state_lock = threading.Lock()  # a call's QUEUED -> RUNNING or DROPPED
        self._thread: threading.Thread | None = None
        # The last call handed to the thread; calls run in order, so once it
        # is done the thread is idle.
        self._last: _Call | None = None
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
        loop = asyncio.get_running_loop()
        call = _Call(fn, args, kwargs, loop)
        waiter = call.waiter = loop.create_future()
        self._hand_over(call)
        try:
            return await_(waiter)
        except asyncio.CancelledError:
            self._abandon(call, loop)
            raise

    def _hand_over(self, call: _Call | None) -> None:
        if call is not None:
            self._last = call
        if self._thread is None:
            Worker._started += 1
            name = f"tandem-db-{Worker._started}"
            # A daemon: a connection nobody closed must not keep the process alive.
            self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
            self._thread.start()
        self._queue.put(call)

    def _serve(self) -> None:
        get, lock = self._queue.get, self._state_lock
        while (call := get()) is not _STOP:
            with lock:
                if call.state == _DROPPED:
                    continue
                call.state = _RUNNING
            call.run()
            call = None  # hold nothing while idle

    def _abandon(self, call: _Call, loop: asyncio.AbstractEventLoop) -> None:
        # Our task was cancelled mid-call. A call still queued never runs.
        # One the thread has started must be stopped on the driver's side;
        # then we wait until the connection is ours again, so nobody else
        # uses it while the thread does. The interrupt is repeated: one that
        # lands between the thread picking the call up and the driver
        # starting the statement is lost (SQLite ignores an interrupt while
        # no statement runs), and the statement would run to its end.
        with self._state_lock:
            if call.state == _QUEUED:
                call.state = _DROPPED
                return
        waiter = call.waiter
        if waiter is not None and waiter.done() and not waiter.cancelled():
            # The outcome arrived just before the cancellation: whatever it is,
            # it is expected now. Retrieve it, so the loop does not log "Future
            # exception was never retrieved".
            waiter.exception()
        if call.done():
            return
        finished = call.finished = loop.create_future()
        while not call.done():
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
        self._hand_over(_Call(fn, args, {}, None))

    def stop(self) -> None:
        """Let the thread end once its queued calls have run."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self._queue.put(_STOP)


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
