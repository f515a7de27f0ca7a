"""Task-owned connection state for ``django.db.connections``.

Django keeps one ``DatabaseWrapper`` per alias in an ``asgiref.local.Local``;
on the loop thread that storage follows contextvars, so a task created after
its parent touched a connection would inherit the parent's wrapper. For tandem
aliases on an event loop we key wrappers by the asyncio task instead:

* By default each task owns its wrappers. Their connection comes from the
  loop's pool when a unit of work (an outermost ``native()`` call) needs one
  and goes back as soon as the unit ends, unless a transaction or an open
  server-side cursor still needs it.
* A ``Shared`` wrapper is one several tasks use: the transaction of an
  ``aatomic`` block (seen by the tasks created inside it, through a
  contextvar) or a test's transaction (seen by every task, see
  ``tandem.testing``). Units of tasks that share a wrapper run one at a time.

Outside a running loop (sync code: WSGI, management commands, Celery) every
lookup goes to Django's own storage: the sync path is untouched.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import transaction as django_transaction

from tandem.bridge import current_settling, set_unit_hook
from tandem.bridge.locks import TaskLock

__all__ = [
    "Shared",
    "TaskConnections",
    "TransactionEnded",
    "TransactionInThread",
    "at_rest",
    "current_task",
    "every_alias_tandem",
    "forget_settings",
    "in_any_block",
    "install",
    "is_tandem_alias",
    "lend_connections",
    "mark_blocks_for_rollback",
    "open_block",
    "refuse_thread_in_block",
]


class TransactionEnded(django_transaction.TransactionManagementError):
    """A task used the connection of an ``aatomic`` block that has ended."""


class TransactionInThread(django_transaction.TransactionManagementError):
    """A thread started inside an ``aatomic`` block tried to use its database.

    The block's transaction lives on one connection, used on the event loop;
    the thread would get a connection of its own and write outside the
    transaction, where a rollback could not reach.
    """


class Shared:
    """A wrapper used by several tasks, one unit of work at a time."""

    def __init__(
        self, alias: str, wrapper: Any, owner: asyncio.Task | None = None, covers: tuple = ()
    ) -> None:
        self.alias = alias
        self.wrapper = wrapper
        self.owner = owner
        self.lock = TaskLock()
        self.ended = False
        # Locks the lending task holds on behalf of this Shared's tasks.
        self.covers = covers

    def checked_wrapper(self) -> Any:
        """The wrapper, unless the block it belonged to has ended."""
        if self.ended:
            raise TransactionEnded(
                f"This task was created inside an aatomic(using={self.alias!r}) block "
                "that has ended; it can no longer use that transaction. Await the "
                "tasks you create inside a block before the block ends, or create "
                "them outside it."
            )
        return self.wrapper


# alias -> innermost aatomic block visible to the current context
transactions: ContextVar[dict[str, Shared]] = ContextVar("tandem_transactions", default={})  # noqa: B039
# alias -> stack of test transactions every task joins (see tandem.testing)
test_connections: dict[str, list[Shared]] = {}

_owned: weakref.WeakKeyDictionary[asyncio.Task, dict[str, Any]] = weakref.WeakKeyDictionary()
_unit_depth: dict[asyncio.Task, int] = {}
_unit_locks: dict[asyncio.Task, list[TaskLock]] = {}  # held by a task's running unit
_release_scheduled: set[asyncio.Task] = set()
_tandem_aliases: dict[str, bool] = {}


def is_tandem_alias(alias: str) -> bool:
    """True if ``alias`` is configured with a tandem backend."""
    try:
        return _tandem_aliases[alias]
    except KeyError:
        from django.db import connections

        engine = connections.settings.get(alias, {}).get("ENGINE", "")
        result = _tandem_aliases[alias] = engine.startswith("tandem.db.backends.")
        return result


def every_alias_tandem() -> bool | None:
    """True if every alias is on a tandem backend, False if none is, None if mixed."""
    try:
        return _tandem_aliases[""]  # "" is never an alias: the cache slot for this answer
    except KeyError:
        from django.db import connections

        flags = {is_tandem_alias(alias) for alias in connections.settings}
        # The "" slot holds this answer, None included; aliases' slots hold bools.
        result = _tandem_aliases[""] = flags.pop() if len(flags) == 1 else None  # type: ignore[assignment]
        return result


def forget_settings(**kwargs: Any) -> None:
    """Drop cached alias facts (connected to ``setting_changed``)."""
    if kwargs.get("setting") == "DATABASES":
        _tandem_aliases.clear()


def current_task() -> asyncio.Task | None:
    """The running asyncio task, or None in sync code."""
    loop = asyncio._get_running_loop()
    return None if loop is None else asyncio.current_task(loop)


def open_block(alias: str) -> Shared | None:
    """The ``aatomic`` block on ``alias`` the current context runs inside, if any."""
    shared = transactions.get().get(alias)
    return None if shared is None or shared.ended else shared


def in_any_block() -> bool:
    """True if the current context runs inside an open ``aatomic`` block (any alias)."""
    return any(not shared.ended for shared in transactions.get().values())


def refuse_thread_in_block(alias: str) -> None:
    """Raise ``TransactionInThread`` if this thread was started inside a block on ``alias``.

    Called before a tandem wrapper connects outside an event loop. Threads
    started with ``sync_to_async(thread_sensitive=False)`` or
    ``asyncio.to_thread`` copy the starting task's context, so they see the
    block it had open; their queries would run on the thread's own
    connection, outside the transaction, and survive its rollback.
    """
    if open_block(alias) is not None:
        raise TransactionInThread(
            f"This thread was started inside an aatomic(using={alias!r}) block, and "
            f"queries on {alias!r} from a thread cannot join its transaction (it lives "
            "on one connection, on the event loop): they would be written outside it. "
            "Run the sync code with tandem.native() or a thread-sensitive "
            "sync_to_async() (both join the block), or start the thread outside the block."
        )


def mark_blocks_for_rollback(error: BaseException) -> None:
    """A unit inside ``aatomic`` blocks was cancelled in their database I/O: they must roll back.

    The cancelled statement may have been aborted on the server (PostgreSQL
    then refuses the rest of the transaction and turns its COMMIT into a
    ROLLBACK) or half-done: either way the block cannot commit, exactly as
    when an exception leaves an ``atomic()`` block (Django's
    ``mark_for_rollback_on_error``). Its next query raises, and it rolls back;
    if nothing raised by then, its exit raises ``TransactionManagementError``.
    """
    for shared in transactions.get().values():
        wrapper = shared.wrapper
        if not wrapper.io_cancelled:
            continue  # what was cancelled was not this block's database I/O
        wrapper.io_cancelled = False
        if not shared.ended and wrapper.in_atomic_block and not wrapper.needs_rollback:
            wrapper.needs_rollback = True
            wrapper.rollback_exc = error
            # The block level it happened at: its exit raises (tandem.transaction).
            wrapper.cancel_mark = (len(wrapper.savepoint_ids), error)


def _resolve(task: asyncio.Task, alias: str) -> Any:
    """The wrapper ``task`` uses for tandem ``alias``, or None if it has none yet."""
    shared = transactions.get().get(alias)
    if shared is not None:
        return shared.checked_wrapper()
    stack = test_connections.get(alias)
    if stack:
        return stack[-1].wrapper
    return _owned.get(task, {}).get(alias)


class TaskConnections:
    """Stands in for ``ConnectionHandler._connections`` (an asgiref Local)."""

    __slots__ = ("_django",)

    def __init__(self, django_storage: Any) -> None:
        object.__setattr__(self, "_django", django_storage)

    def __getattr__(self, alias: str) -> Any:
        task = current_task()
        if task is None or not is_tandem_alias(alias):
            return getattr(self._django, alias)
        wrapper = _resolve(task, alias)
        if wrapper is None:
            raise AttributeError(alias)
        return wrapper

    def __setattr__(self, alias: str, wrapper: Any) -> None:
        task = current_task()
        if task is None or not is_tandem_alias(alias):
            setattr(self._django, alias, wrapper)
            return
        wrapper.task_owned = True
        wrappers = _owned.get(task)
        if wrappers is None:
            wrappers = _owned[task] = {}
            task.add_done_callback(_task_done)
        wrappers[alias] = wrapper

    def __delattr__(self, alias: str) -> None:
        task = current_task()
        if task is None or not is_tandem_alias(alias):
            delattr(self._django, alias)
            return
        try:
            del _owned[task][alias]
        except KeyError:
            raise AttributeError(alias) from None


def at_rest() -> bool:
    """True when no task is inside a unit of work or about to give a connection back.

    A diagnostic for tests and debugging: after every task has ended, it
    must be True, or a unit of work was left behind.
    """
    return not _unit_depth and not _unit_locks and not _release_scheduled


def _task_done(task: asyncio.Task) -> None:
    _release_scheduled.discard(task)
    for wrapper in _owned.pop(task, {}).values():
        wrapper.release_connection(force=True)


def _release_idle(task: asyncio.Task) -> None:
    """End of a unit: the task's idle connections go back to the pool soon.

    "Soon" is the loop's next turn: if the task goes straight on to its next
    ORM call, it keeps its connection (no pool round trip, no re-running of
    Django's connect()); as soon as it awaits anything else - or another task
    is waiting for a connection - the connection goes back.
    """
    holding = False
    for wrapper in _owned.get(task, {}).values():
        if wrapper.connection is not None:
            if wrapper.pool_has_waiters():
                wrapper.release_connection()
            holding = holding or wrapper.connection is not None
    if holding and task not in _release_scheduled:
        _release_scheduled.add(task)
        asyncio.get_running_loop().call_soon(_release_if_between_units, task)


def _release_if_between_units(task: asyncio.Task) -> None:
    _release_scheduled.discard(task)
    if task in _unit_depth:
        return  # inside its next unit already; that unit's end schedules us again
    for wrapper in _owned.get(task, {}).values():
        if wrapper.connection is not None:
            wrapper.release_connection()


def _locks_for_unit() -> list[TaskLock]:
    visible = transactions.get().values()
    shared = [s for s in visible if not s.ended]
    shared += [stack[-1] for stack in test_connections.values() if stack]
    if not shared:
        return shared  # type: ignore[return-value]  # empty
    covered = {lock for s in visible for lock in s.covers}
    shared.sort(key=lambda s: (s.alias, s.owner is not None))  # fixed order: no lock-order deadlock
    return [s.lock for s in shared if s.lock not in covered]


async def _unit_of_work(drive, fn, args, kwargs):
    """Bracket each native() call: take shared locks, return connections after."""
    task: asyncio.Task = current_task()  # type: ignore[assignment]  # native() is awaited in a task
    depth = _unit_depth.get(task, 0)
    held: list[TaskLock] = _locks_for_unit() if depth == 0 else []
    settle = current_settling()
    taken = 0
    try:
        for lock in held:
            if lock.try_acquire(task):
                pass
            elif settle is None:
                await lock.acquire(task)
            else:  # work that must finish: a cancellation waits for it
                await settle.outlast_cancellation(lock.acquire(task))
            taken += 1
        if depth == 0 and held:
            _unit_locks[task] = held
        _unit_depth[task] = depth + 1
        try:
            return await drive(fn, args, kwargs)
        except asyncio.CancelledError as exc:
            if depth == 0:
                mark_blocks_for_rollback(exc)
            raise
        finally:
            if depth:
                _unit_depth[task] = depth
            else:
                del _unit_depth[task]
                _unit_locks.pop(task, None)
                _release_idle(task)
    finally:
        for lock in reversed(held[:taken]):
            lock.release(task)


_installed = False


def install() -> None:
    """Bracket units of work (idempotent); ``tandem.patches`` swaps the storage."""
    global _installed
    if _installed:
        return
    from django.core.signals import setting_changed

    set_unit_hook(_unit_of_work)
    setting_changed.connect(forget_settings)
    _installed = True


@contextmanager
def lend_connections() -> Iterator[None]:
    """Let tasks created in this block join the current task's open transactions.

    Used when sync code in the bridge runs async code (``Signal.send`` with
    async receivers): as in stock Django, that code must see the transaction
    the sync code is in, and must not wait on its row locks from another
    connection. The lending task is suspended mid-unit meanwhile, so the
    tasks it lends to may use its wrappers - and skip the locks it holds.
    """
    task: asyncio.Task = current_task()  # type: ignore[assignment]  # used inside native(): in a task
    aliases = {*_owned.get(task, {}), *transactions.get(), *(a for a, st in test_connections.items() if st)}
    # The locks the lender holds for its tasks: its unit's, and those its
    # blocks hold for theirs (a test's lock, held by a block under TestCase).
    held = (*_unit_locks.get(task, ()), *(lock for s in transactions.get().values() for lock in s.covers))
    lent = {}
    for alias in aliases:
        wrapper = _resolve(task, alias)
        if wrapper is not None and wrapper.in_atomic_block:
            lent[alias] = Shared(alias, wrapper, owner=task, covers=held)
    if not lent:
        yield
        return
    token = transactions.set({**transactions.get(), **lent})
    try:
        yield
    finally:
        transactions.reset(token)
        for shared in lent.values():
            shared.ended = True
