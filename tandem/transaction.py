"""``aatomic``: Django's ``atomic()`` for async code.

The block runs Django's own ``Atomic`` (savepoints, ``durable``,
``set_rollback``, ``on_commit``) with its enter and exit awaited through the
bridge. The connection it runs on stays with the block until it ends.

One rule keeps the block's writes inside it: while a task has the block
open, every query on its alias by that task or by what it starts runs in
the block's transaction, or fails at once. Tasks created inside the block
inherit it through a contextvar and *join* the transaction: they use its
connection, one unit of work at a time. A joined task that opens its own
``aatomic`` holds the transaction for the whole inner block, so its
savepoint can't interleave with another task's. A task still using the
transaction after the block ended gets ``TransactionEnded``; a thread
started inside it gets ``TransactionInThread`` (thread-sensitive
``sync_to_async`` is no thread here: it runs in the bridge and joins).

Cancellation is an outcome like an exception: a query cancelled inside the
block marks it for rollback (``tandem.db.scope``); a cancellation that arrives
while the outermost block commits waits for the commit's answer (at most
``COMMIT_GRACE`` seconds), lets its ``on_commit`` callbacks run, and is
raised after them, with a note that says whether the block committed.

``on_commit`` callbacks run after the transaction is gone, outside the
block: tasks they start are ordinary tasks, not members of a finished block.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from contextvars import Token
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db import transaction as django_transaction

from tandem.bridge import call_native, is_async_callable, settling
from tandem.db.scope import Shared, current_task, is_tandem_alias, test_connections, transactions

__all__ = ["aatomic"]

F = TypeVar("F", bound=Callable[..., Any])


# How long a cancellation that arrives while a block commits (or rolls back)
# and runs its on_commit callbacks waits for them, in seconds. After that the
# I/O is cancelled as usual and the commit's outcome is unknown to the caller.
COMMIT_GRACE = 10.0


@dataclass
class _Frame:
    """One entry of an ``aatomic`` by one task."""

    atomic: django_transaction.Atomic
    token: Token
    shared: Shared | None  # the block's Shared if this entry created it
    held: Shared | None  # a Shared whose lock this entry holds until it exits
    outermost: bool  # this entry began the transaction: its exit commits


def _enter(atomic: django_transaction.Atomic, alias: str) -> tuple[Any, bool]:
    wrapper = connections[alias]
    outermost = not wrapper.in_atomic_block
    wrapper.io_cancelled = False  # noted before this block: not its business
    atomic.__enter__()
    return wrapper, outermost


def _exit(frame: _Frame, alias: str, exc_info: tuple) -> tuple[bool, list]:
    """Leave the block: (committed?, the on_commit callbacks of a commit, unrun)."""
    wrapper = connections[alias]
    mark = _take_cancel_mark(wrapper)
    deferred: list = []
    commits = frame.outermost and exc_info[0] is None and not wrapper.needs_rollback
    if frame.outermost:
        wrapper.commit_hooks_deferred = deferred
    try:
        frame.atomic.__exit__(*exc_info)
    finally:
        wrapper.commit_hooks_deferred = None
    if mark is not None and exc_info[0] is None:
        # The block caught a cancellation of its own query and went on as
        # if nothing happened: it has been rolled back, which it must hear.
        raise django_transaction.TransactionManagementError(
            f"This aatomic(using={alias!r}) block was rolled back: a query in it was "
            "cancelled (a timeout, task.cancel()), and a transaction cannot go on after "
            "that. Let the cancellation leave the block, or wrap the query in a nested "
            "aatomic() to roll back only that."
        ) from mark
    return commits, deferred


def _take_cancel_mark(wrapper: Any) -> BaseException | None:
    """The cancellation that marked the block level now exiting for rollback, if any.

    Consumed here; ignored if the block's code overrode it with
    ``set_rollback(False)``.
    """
    mark, level = wrapper.cancel_mark, len(wrapper.savepoint_ids)
    if mark is None or mark[0] < level:
        return None  # marked at an outer level: that level's exit says so
    wrapper.cancel_mark = None
    return mark[1] if mark[0] == level and wrapper.needs_rollback else None


def _run_commit_hooks(alias: str, hooks: list) -> None:
    wrapper = connections[alias]
    wrapper.run_on_commit = hooks
    wrapper.run_and_clear_commit_hooks()


class aatomic:  # noqa: N801 - named like Django's atomic
    """``async with aatomic(using=None, savepoint=True, durable=False):``.

    Also decorates async functions: ``@aatomic`` or ``@aatomic(using="other")``.
    """

    def __init__(self, using: str | Callable | None = None, savepoint: bool = True, durable: bool = False):
        # A callable never gets here: __new__ returned the decorated function.
        self.using: str | None = using  # type: ignore[assignment]
        self.savepoint = savepoint
        self.durable = durable
        # Per task, as Django's Atomic keeps its state per thread (on the
        # connection): one instance may be entered by several tasks at once.
        # Weak: a task destroyed inside the block leaves nothing behind here.
        self._frames: weakref.WeakKeyDictionary[asyncio.Task, list[_Frame]] = weakref.WeakKeyDictionary()

    def __new__(cls, using=None, savepoint=True, durable=False):
        # Bare decorator: @aatomic
        if callable(using):
            return cls(DEFAULT_DB_ALIAS, savepoint, durable)(using)
        return super().__new__(cls)

    @property
    def alias(self) -> str:
        """The database alias this block runs on."""
        return self.using or DEFAULT_DB_ALIAS

    async def __aenter__(self) -> aatomic:
        alias = self.alias
        if not is_tandem_alias(alias):
            raise django_transaction.TransactionManagementError(
                f"aatomic(using={alias!r}) needs a tandem backend; the ENGINE of "
                f"DATABASES[{alias!r}] is {connections.settings[alias]['ENGINE']!r}. "
                "Use a tandem.db.backends.* ENGINE, or for a stock backend wrap a "
                "function that uses atomic() in sync_to_async()."
            )
        task: asyncio.Task = current_task()  # type: ignore[assignment]  # async with: in a task
        visible = transactions.get()
        outer = visible.get(alias)
        held = _to_hold(task, outer, alias)
        if held is not None:
            await held.lock.acquire(task)
        try:
            wrapper, outermost = await call_native(_enter, atomic := self._atomic(), alias)
        except BaseException:
            if held is not None:
                held.lock.release(task)
            raise
        if outer is not None and outer.owner is task:
            shared = None  # nested in our own block: same transaction
        else:
            # A joined task's inner block passes on the locks the block it
            # joined holds for its tasks; a test's block, the test's lock.
            covers = outer.covers if outer is not None else (held.lock,) if held is not None else ()
            shared = Shared(alias, wrapper, owner=task, covers=covers)
        token = transactions.set({**visible, alias: shared or outer})  # type: ignore[dict-item]
        self._frames.setdefault(task, []).append(_Frame(atomic, token, shared, held, outermost))
        return self

    def _atomic(self) -> django_transaction.Atomic:
        return django_transaction.Atomic(self.alias, self.savepoint, self.durable)

    async def __aexit__(self, exc_type, exc, tb) -> None:
        task: asyncio.Task = current_task()  # type: ignore[assignment]
        frames = self._frames[task]
        frame = frames.pop()
        if not frames:
            del self._frames[task]
        # A cancellation waits for the block's end (its COMMIT's answer, its
        # callbacks): an exit left half-done would leave the connection's
        # transaction state behind, and a commit unreported.
        with settling(COMMIT_GRACE) as settle:
            try:
                committed, hooks = await call_native(_exit, frame, self.alias, (exc_type, exc, tb))
            except BaseException as error:
                if not settle.cancelled:
                    raise
                # The grace ran out: the commit was cut short. The caller was
                # cancelled, and must hear that, not only the commit's error.
                note = (
                    f"aatomic(using={self.alias!r}) did not finish within COMMIT_GRACE "
                    f"({COMMIT_GRACE} s) of this cancellation; whether it committed is unknown."
                )
                if isinstance(error, asyncio.CancelledError):
                    error.add_note(note)
                    raise
                cancelled = asyncio.CancelledError()
                cancelled.add_note(note)
                raise cancelled from error
            finally:
                self._forget(frame, task)
            if hooks:  # the transaction is gone: what they start is on its own
                await call_native(_run_commit_hooks, self.alias, hooks)
        if settle.cancelled:
            cancelled = asyncio.CancelledError()
            if frame.outermost:
                outcome = "committed, and its on_commit callbacks ran" if committed else "rolled back"
                cancelled.add_note(
                    f"aatomic(using={self.alias!r}) {outcome} before this cancellation took effect."
                )
            raise cancelled

    @staticmethod
    def _forget(frame: _Frame, task: asyncio.Task) -> None:
        transactions.reset(frame.token)
        if frame.shared is not None:
            frame.shared.ended = True  # tasks that outlive the block must not use it
        if frame.held is not None:
            frame.held.lock.release(task)

    def __call__(self, func: F) -> F:
        if not is_async_callable(func):
            raise TypeError(f"aatomic decorates async functions; {func!r} is not one. Use atomic().")

        @functools.wraps(func)
        async def inner(*args, **kwargs):
            async with aatomic(self.using, self.savepoint, self.durable):
                return await func(*args, **kwargs)

        return inner  # type: ignore[return-value]


def _to_hold(task: asyncio.Task, outer: Shared | None, alias: str) -> Shared | None:
    """The Shared whose lock a new block must hold for its whole life, if any.

    A joined task's inner block holds the transaction it joined, so its
    savepoint cannot interleave with another task's. Under a test's shared
    transaction (``TestCase``) an independent block holds the test's lock: in
    production it would have a connection to itself, and interleaved
    savepoints of two blocks on one connection would undo each other.
    """
    if outer is not None:
        return outer if outer.owner is not task else None
    stack = test_connections.get(alias)
    return stack[-1] if stack else None
