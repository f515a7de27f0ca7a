"""``aatomic``: Django's ``atomic()`` for async code.

The block runs Django's own ``Atomic`` (savepoints, ``durable``,
``set_rollback``, ``on_commit``) with its enter and exit awaited through the
bridge. The connection it runs on stays with the block until it ends.

Tasks created inside the block inherit it through a contextvar and *join* the
transaction: they use its connection, one unit of work at a time. A joined
task that opens its own ``aatomic`` holds the transaction for the whole inner
block, so its savepoint can't interleave with another task's. A task still
using the transaction after the block ended gets ``TransactionEnded``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db import transaction as django_transaction

from tandem.bridge import call_native
from tandem.scope import Shared, current_task, is_tandem_alias, transactions

if TYPE_CHECKING:
    import asyncio

__all__ = ["aatomic"]

F = TypeVar("F", bound=Callable[..., Any])


def _enter(atomic: django_transaction.Atomic, alias: str):
    atomic.__enter__()
    return connections[alias]


class aatomic:  # noqa: N801 - named like Django's atomic
    """``async with aatomic(using=None, savepoint=True, durable=False):``.

    Also decorates async functions: ``@aatomic`` or ``@aatomic(using="other")``.
    """

    def __init__(self, using: str | Callable | None = None, savepoint: bool = True, durable: bool = False):
        # A callable never gets here: __new__ returned the decorated function.
        self.using: str | None = using  # type: ignore[assignment]
        self.savepoint = savepoint
        self.durable = durable
        self._frames: list[tuple[Any, ...]] = []

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
        atomic = django_transaction.Atomic(alias, self.savepoint, self.durable)
        held = None
        if outer is not None and outer.owner is not task:
            # A joined task's inner block: keep the transaction to ourselves
            # until it ends, so savepoints nest properly.
            await outer.lock.acquire(task)
            held = outer
        try:
            wrapper = await call_native(_enter, atomic, alias)
        except BaseException:
            if held is not None:
                held.lock.release(task)
            raise
        if outer is not None and held is None:
            shared, created = outer, False  # nested in our own block: same transaction
        else:
            shared, created = Shared(alias, wrapper, owner=task), True
        token = transactions.set({**visible, alias: shared})
        self._frames.append((atomic, shared if created else None, token, held, task))
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        atomic, created, token, held, task = self._frames.pop()
        try:
            await call_native(atomic.__exit__, exc_type, exc, tb)
        finally:
            transactions.reset(token)
            if created is not None:
                created.ended = True  # tasks that outlive the block must not use it
            if held is not None:
                held.lock.release(task)

    def __call__(self, func: F) -> F:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"aatomic decorates async functions; {func!r} is not one. Use atomic().")

        @functools.wraps(func)
        async def inner(*args, **kwargs):
            async with aatomic(self.using, self.savepoint, self.durable):
                return await func(*args, **kwargs)

        return inner  # type: ignore[return-value]
