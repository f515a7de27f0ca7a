"""What every tandem backend adds to Django's ``DatabaseWrapper``.

A tandem wrapper behaves exactly like Django's in sync code. On an event
loop it is owned by one task (``task_owned``), takes its connection from the
loop's pool for each unit of work and gives it back when the unit ends, and
runs async ``on_commit`` callbacks by awaiting them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.core import checks
from django.db.utils import DatabaseErrorWrapper
from django.utils.functional import cached_property

from tandem import patches
from tandem.bridge import await_, in_bridge, is_async_callable, native
from tandem.db.guard import bridge_aware_guard, bridge_aware_guards
from tandem.db.pool import Pool, PoolOptions, pool_for
from tandem.db.scope import refuse_thread_in_block
from tandem.db.session import watching

__all__ = [
    "CancelAwareErrors",
    "PinnedCursor",
    "TandemValidationMixin",
    "TandemWrapperMixin",
    "bridgeable",
    "missing_app_error",
]


def bridgeable(wrapper_class: type) -> type:
    """A subclass of Django's ``wrapper_class`` whose guards allow the bridge."""
    name = f"Bridgeable{wrapper_class.__name__}"
    return bridge_aware_guards(type(name, (wrapper_class,), {"__module__": __name__}))


def _on_loop_outside_bridge() -> bool:
    return asyncio._get_running_loop() is not None and not in_bridge()


def _awaiting(func):
    """A sync callable that runs the async callable ``func`` to completion."""

    @functools.wraps(func)
    def run():
        if in_bridge():
            return await_(func())
        if _on_loop_outside_bridge():
            raise RuntimeError(
                f"The async on_commit() callback {func!r} was called from sync code on "
                "the event loop, where nothing can await it (in a test: use "
                "`async with self.captureOnCommitCallbacks(execute=True):`)."
            )
        return async_to_sync(func)()

    return run


_background: set[asyncio.Task] = set()


def _in_background(coro) -> None:
    """Run ``coro`` as a task nobody awaits, kept referenced until it ends."""
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


logger = logging.getLogger("tandem.db.backends")

if TYPE_CHECKING:
    # To mypy the mixins below extend what they are mixed into (Django's
    # wrapper, which is Any here), so their super() calls and the wrapper's
    # attributes check. At run time they extend object, as written.
    from django.db.backends.base.base import BaseDatabaseWrapper as _WrapperBase
    from django.db.backends.base.validation import BaseDatabaseValidation as _ValidationBase
else:
    _WrapperBase = _ValidationBase = object


class CancelAwareErrors(DatabaseErrorWrapper):
    """Django's error translation around each database call, noting cancellations.

    Every statement, fetch, commit, rollback and connect of Django's passes
    through it, so a ``CancelledError`` seen here interrupted database I/O:
    the wrapper's transaction may be broken (``tandem.db.scope`` marks an
    ``aatomic`` block for rollback), where a cancelled cache call or sleep
    leaves it as it was.
    """

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
            self.wrapper.io_cancelled = True
        return super().__exit__(exc_type, exc_value, traceback)


class TandemWrapperMixin(_WrapperBase):
    """Mixed in before a ``bridgeable()`` Django wrapper by each tandem backend."""

    # Set by tandem.db.scope when the wrapper is stored for an asyncio task.
    task_owned = False
    # A cancellation interrupted this wrapper's database I/O (CancelAwareErrors).
    io_cancelled = False
    # (atomic level, CancelledError) of a block marked for rollback by a
    # cancellation (tandem.db.scope.mark_blocks_for_rollback); its exit raises.
    cancel_mark: tuple[int, BaseException] | None = None
    # Open server-side cursors: they live on the connection, so it stays.
    pinned_cursors = 0
    # A statement may have changed the connection's session (SET, a temporary
    # table, an advisory lock...: tandem.db.session): the connection stays
    # with its task, and is closed rather than pooled when the task is done.
    session_changed = False
    # The pool this task-owned wrapper's connections come from (one loop's).
    _pool: Pool | None = None
    if TYPE_CHECKING:  # Django's attributes that tandem's code assigns
        connection: Any  # the driver connection, or None
        settings_dict: dict[str, Any]

    # -- hooks each backend implements for its driver --------------------------
    @staticmethod
    def connection_is_reusable(conn: Any) -> bool:
        """True if ``conn`` is open, healthy and idle outside a transaction."""
        raise NotImplementedError

    @staticmethod
    def close_raw_connection(conn: Any) -> None:
        """Close a driver connection without waiting on the network."""
        conn.close()

    def ping_raw_connection(self, conn: Any) -> None:
        """Raise if ``conn`` does not answer a trivial query."""
        raise NotImplementedError

    @cached_property
    def wrap_database_errors(self) -> CancelAwareErrors:
        """Django's ``DatabaseErrorWrapper``, which also notes cancelled I/O."""
        return CancelAwareErrors(self)

    # -- the pool -------------------------------------------------------------
    @property
    def pooled(self) -> bool:
        """True if connections come from the loop's pool: a task's wrapper, on its loop.

        A task's wrapper lent to a plain thread (``inc_thread_sharing()``)
        has no loop there, hence no pool: it connects as Django does.
        """
        return self.task_owned and asyncio._get_running_loop() is not None

    def tandem_pool(self) -> Pool:
        """This alias's pool on the running event loop."""
        return pool_for(self.alias, self._make_pool)

    def _make_pool(self) -> Pool:
        options = PoolOptions.from_settings(self.alias, self.settings_dict["OPTIONS"].get("pool"))
        ping = self.ping_raw_connection if self.settings_dict["CONN_HEALTH_CHECKS"] else None
        return Pool(
            self.alias,
            options,
            reusable=self.connection_is_reusable,
            close=self.close_raw_connection,
            ping=ping,
        )

    # -- session state (tandem.db.session) -------------------------------------
    def make_cursor(self, cursor):
        """The backend's cursor wrapper, watching for statements that change the session."""
        wrapped = super().make_cursor(cursor)
        wrapped.__class__ = watching(type(wrapped))  # type: ignore[arg-type]  # mypy: a class is Hashable
        return wrapped

    def make_debug_cursor(self, cursor):
        """The backend's debug cursor wrapper (queries logged), watching the same."""
        wrapped = super().make_debug_cursor(cursor)
        wrapped.__class__ = watching(type(wrapped))  # type: ignore[arg-type]  # mypy: a class is Hashable
        return wrapped

    def connect(self):
        """Django's ``connect()``; what it sets up is the connection's baseline session."""
        super().connect()
        self.session_changed = False

    def get_new_connection(self, conn_params):
        """Open a connection; a task-owned wrapper on its loop takes one from the pool."""
        if not self.pooled:
            self._pool = None
            return super().get_new_connection(conn_params)
        open_new = super().get_new_connection
        self._pool = self.tandem_pool()
        return self._pool.acquire(lambda: open_new(conn_params))

    @bridge_aware_guard
    def close(self):
        """Django's ``close()``; a task-owned wrapper gives its connection back.

        Closing is how Django ends a connection's use (``close_old_connections``
        at the end of a request, ``connections.close_all()``); for a pooled
        connection that means returning it to the pool, which closes it
        instead if it is not clean. A connection Django found unusable (failed
        health check, errors) is really closed, as is one closed inside an
        atomic block. ``_close()`` keeps Django's meaning: close the driver
        connection.
        """
        conn = self.connection
        if self._discarding and self.task_owned and conn is not None:
            pool = self._pool
            super().close()
            if pool is not None and self.connection is None:  # closed for good: not the pool's any more
                pool.forget(conn)
            return None
        if not self.task_owned or conn is None or self.in_atomic_block:
            return super().close()
        self.validate_thread_sharing()
        self.run_on_commit = []
        if self.closed_in_transaction:
            return None
        self.connection = None
        self._give_back(conn)
        return None

    _discarding = False

    @contextmanager
    def _discard_on_close(self) -> Iterator[None]:
        self._discarding = True
        try:
            yield
        finally:
            self._discarding = False

    def close_if_unusable_or_obsolete(self):
        """Django's, except that a pooled connection's age is the pool's business.

        ``CONN_MAX_AGE`` (0 by default: close at the end of each request)
        does not apply to task-owned wrappers: ``max_lifetime`` in the pool's
        options does. An unusable connection is discarded, not given back.

        Django calls this as a request starts and ends. A connection whose
        session a request changed is discarded there too, outside a
        transaction: a task may serve several requests (Django 6.1's ASGI
        handler runs the view in the server's task), and the next request
        must not inherit the session.
        """
        if self.task_owned:
            self.close_at = None
            conn = self.connection
            if conn is not None and self.session_changed and not self.in_atomic_block:
                self.connection = None
                self._give_back(conn)  # session changed: closed, not pooled
                return
        with self._discard_on_close():
            super().close_if_unusable_or_obsolete()

    def close_if_health_check_failed(self):
        """Django's health check; a connection that fails it is discarded."""
        with self._discard_on_close():
            super().close_if_health_check_failed()

    def pool_has_waiters(self) -> bool:
        """True if another task waits for a connection of this alias."""
        pool = self._pool
        return pool is not None and pool.has_waiters

    def release_connection(self, force: bool = False) -> None:
        """End of a unit of work: return an idle connection to the pool.

        Kept while an atomic block or a server-side cursor still needs it,
        or while its session carries the task's changes (``session_changed``),
        unless ``force`` (the owning task has finished).
        """
        conn = self.connection
        if conn is None or (
            not force and (self.in_atomic_block or self.pinned_cursors or self.session_changed)
        ):
            return
        self.connection = None
        self.pinned_cursors = 0
        self._give_back(conn)

    def _give_back(self, conn: Any) -> None:
        pool = self._pool
        changed, self.session_changed = self.session_changed, False
        if pool is None or pool.closed:
            self.close_raw_connection(conn)
        elif changed:
            # Its session is not the baseline any more: no other task may get it.
            pool.discard(conn)
        else:
            pool.release(conn)

    # -- async-context behaviour ---------------------------------------------
    def ensure_connection(self):
        """Connect now; on the loop outside the bridge there is nothing to do.

        Between units of work a tandem wrapper holds no connection by design:
        the next unit takes one. (``CaptureQueriesContext`` calls this.) In
        a thread started inside an ``aatomic`` block of this alias, refused:
        see ``tandem.db.scope.refuse_thread_in_block``.
        """
        if asyncio._get_running_loop() is None:
            refuse_thread_in_block(self.alias)
        elif not in_bridge() and not os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE"):
            return
        super().ensure_connection()

    # Set by tandem.transaction while an aatomic block commits: the commit's
    # on_commit callbacks are collected here, to run once the block is gone.
    commit_hooks_deferred: list | None = None

    def run_and_clear_commit_hooks(self):
        """Django's; while an ``aatomic`` block commits, the callbacks wait for its end."""
        deferred = self.commit_hooks_deferred
        if deferred is None:
            return super().run_and_clear_commit_hooks()
        self.validate_no_atomic_block()
        deferred.extend(self.run_on_commit)
        self.run_on_commit = []
        return None

    def on_commit(self, func, robust=False):
        """Django's ``on_commit``; async callables are awaited after the commit.

        In async code outside any transaction of this task, the callback runs
        now, as Django runs it in autocommit mode; an async one is started as
        a task, since nothing here can await it.
        """
        if not callable(func):
            raise TypeError("on_commit()'s callback must be a callable.")
        if not self.in_atomic_block and _on_loop_outside_bridge():
            if is_async_callable(func):
                _in_background(func())
            elif robust:
                try:
                    func()
                except Exception as exc:
                    logger.exception("Error calling %s in on_commit() (%s).", func.__qualname__, exc)
            else:
                func()
            return None
        if is_async_callable(func):
            func = _awaiting(func)
        return super().on_commit(func, robust)

    def chunked_cursor(self):
        """A server-side cursor; the connection stays with the task until it closes."""
        cursor = super().chunked_cursor()
        self.pinned_cursors += 1
        return PinnedCursor(cursor, self)


class PinnedCursor:
    """A Django cursor that unpins its wrapper's connection when closed."""

    def __init__(self, cursor: Any, wrapper: TandemWrapperMixin) -> None:
        self._cursor = cursor
        self._wrapper = wrapper
        self._pinned = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def __iter__(self):
        return iter(self._cursor)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close the cursor and unpin the connection.

        Closing a server-side cursor is a round trip. When it happens on the
        loop outside the bridge (an ``aiterator()`` loop left early: its
        generator is finalised later, by whichever task collects it), we
        must neither block the loop nor wait on a connection another greenlet
        may hold; the close runs as a unit of work of its own instead.
        """
        if not self._pinned:
            return
        if _on_loop_outside_bridge():
            _in_background(native(self._close_now)())
            return
        self._close_now()

    def _close_now(self) -> None:
        try:
            self._cursor.close()
        finally:
            if self._pinned:
                self._pinned = False
                self._wrapper.pinned_cursors = max(0, self._wrapper.pinned_cursors - 1)


class TandemValidationMixin(_ValidationBase):
    """Backend checks (``check --database``, ``migrate``): the app must be installed."""

    def check(self, **kwargs):
        """Django's backend checks plus ``tandem.E001``."""
        issues = super().check(**kwargs)
        error = missing_app_error(self.connection.alias)
        return [*issues, error] if error else issues


def missing_app_error(alias: str) -> checks.CheckMessage | None:
    """``tandem.E001`` if ``alias`` uses a tandem ENGINE but tandem was never activated.

    Activation (``TandemConfig.ready``) is what the check is about, not the app
    registry of the moment: ``override_settings(INSTALLED_APPS=...)`` in a test
    changes the registry, but tandem's hooks stay installed and the ORM stays
    native, so that is no error.
    """
    if "core" in patches.installed():
        return None
    return checks.Error(
        f"DATABASES[{alias!r}] uses a tandem ENGINE but 'tandem' is not in INSTALLED_APPS: "
        "its async ORM calls run in threads, as with a stock backend.",
        hint="Add 'tandem' to INSTALLED_APPS so Django's async ORM runs natively.",
        id="tandem.E001",
    )
