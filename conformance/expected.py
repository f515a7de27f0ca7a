"""Tests of Django's suite that are known to fail under tandem, and why.

Each entry names one test id, the databases and modes it fails on, and the
reason; ``docs/conformance.md`` lists the same entries. A failure listed
here is reported as expected, not as a regression; a listed test that
passes is reported so that the entry can go.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_DATABASES = ("postgresql", "sqlite", "mysql")


@dataclass(frozen=True)
class Expected:
    """A known failure: where it happens and why it cannot be fixed in tandem."""

    databases: tuple[str, ...]
    modes: tuple[str, ...]
    reason: str


ASYNCIO_RUN = Expected(
    ALL_DATABASES,
    ("bridged",),
    "The sync test calls asyncio.run(), which cannot start a loop in a thread whose loop is "
    "running: bridged mode runs sync code on the loop thread. Sync code under native() should "
    "call async_to_sync(), which tandem awaits on the running loop.",
)
STOCK_ENGINE_ON_LOOP = Expected(
    ALL_DATABASES,
    ("bridged",),
    "The test builds its own connection on Django's stock backend and uses it from sync code on "
    "the loop thread; Django's async-safety guard rightly refuses that (tandem lifts the guard "
    "only for its own backends).",
)
SQLITE_IMMEDIATE = Expected(
    ("sqlite",),
    ("sync", "bridged", "mixed"),
    "tandem's SQLite backend defaults OPTIONS['transaction_mode'] to IMMEDIATE (concurrent "
    "tasks upgrading a read to a write would otherwise fail with 'database is locked'); "
    "the test asserts Django's plain BEGIN on the default alias (tandem's in mixed mode, "
    "Django's in mixed-flip, where it passes). Documented in docs/howto/sqlite.md.",
)

RECEIVERS_ON_THE_LOOP = Expected(
    ALL_DATABASES,
    ("sync", "bridged"),
    "The test asserts that request_started/request_finished receivers run in a thread (not the "
    "loop's), which is what tandem's native request path changes on purpose: they run on the "
    "loop through the bridge (docs/concepts/request-path.md). TANDEM_REQUEST_PATH='threads' "
    "restores stock behaviour.",
)
HOOKS_ON_THE_LOOP = Expected(
    ALL_DATABASES,
    ("sync",),
    "The test calls a MiddlewareMixin middleware through async_to_sync() from the test's "
    "thread and asserts that process_request()/process_response() run back in that thread, "
    "with its connection (sync_to_async(thread_sensitive=True)). tandem's native request path "
    "runs those sync hooks on the loop through the bridge on purpose, so they run in "
    "async_to_sync's loop thread, with that task's connection (docs/concepts/request-path.md). "
    "In bridged mode the test's own thread is the loop's and it passes. "
    "TANDEM_REQUEST_PATH='threads' restores stock behaviour.",
)
ATOMIC_REQUESTS_ASYNC = Expected(
    ALL_DATABASES,
    ("sync", "bridged"),
    "The test asserts that ATOMIC_REQUESTS with an async view raises RuntimeError; tandem "
    "supports it for tandem aliases (the view runs in aatomic()), its documented feature.",
)

REDIS_CLIENT_IN_BRIDGE = Expected(
    ALL_DATABASES,
    ("bridged",),
    "The test asserts that RedisCacheClient.get_client() returns a redis.Redis. Called in the "
    "bridge, tandem's client returns the same commands on the running loop's redis.asyncio "
    "client, each one awaited (docs/howto/cache.md): a stand-in with redis.Redis's methods, not "
    "an instance of it. Outside the bridge (sync mode) it is Django's redis.Redis.",
)

SERIALIZED_CONTENTS_ON_THE_THREAD = Expected(
    ALL_DATABASES,
    ("bridged",),
    "The test calls TransactionTestCase._fixture_teardown() itself, from its test method, which "
    "bridged mode runs in a task. Django inhibits post_migrate there if "
    "hasattr(connections['default'], '_test_serialized_contents'): an attribute Django's test "
    "runner sets on the test thread's wrapper when it serializes the test database. A "
    "TransactionTestCase shares no transaction, so its task has a pooled wrapper of its own "
    "(docs/howto/testing.md), without that attribute. Django's runner calls _fixture_teardown() "
    "around the test, outside the loop, where it behaves as in stock Django.",
)

EXPECTED: dict[str, Expected] = {
    "asgi.tests.ASGITest.test_asyncio_cancel_error": RECEIVERS_ON_THE_LOOP,
    "asgi.tests.ASGITest.test_asyncio_streaming_cancel_error": RECEIVERS_ON_THE_LOOP,
    "asgi.tests.ASGITest.test_request_too_big_request_error": RECEIVERS_ON_THE_LOOP,
    "asgi.tests.ASGITest.test_request_lifecycle_signals_dispatched_with_thread_sensitive": (
        RECEIVERS_ON_THE_LOOP
    ),
    "handlers.tests.TransactionsPerRequestTests.test_auto_transaction_async_view": ATOMIC_REQUESTS_ASYNC,
    # Found by the first complete --apps all run (SQLite, Django 5.2).
    "deprecation.test_middleware_mixin.MiddlewareMixinTests."
    "test_sync_to_async_uses_base_thread_and_connection": HOOKS_ON_THE_LOOP,
    "async.tests.ViewTests.test_http_method_not_allowed_responds_correctly": ASYNCIO_RUN,
    "async.tests.ViewTests.test_options_handler_responds_correctly": ASYNCIO_RUN,
    "backends.sqlite.tests.Tests.test_init_command": STOCK_ENGINE_ON_LOOP,
    "backends.sqlite.tests.Tests.test_pathlib_name": STOCK_ENGINE_ON_LOOP,
    # Found by the first --apps all run (SQLite, Django 5.2): the dummy backend
    # of ConnectionHandler({}), and test databases set up on stock sqlite3.
    "admin_scripts.tests.ManageRunserver.test_no_database": STOCK_ENGINE_ON_LOOP,
    "test_runner.tests.SQLiteInMemoryTestDbs.test_transaction_support": STOCK_ENGINE_ON_LOOP,
    "backends.base.test_base.DatabaseWrapperLoggingTests.test_commit_debug_log": SQLITE_IMMEDIATE,
    "backends.sqlite.tests.TestTransactionMode.test_default_transaction_mode": SQLITE_IMMEDIATE,
    "cache.tests.RedisCacheTests.test_get_client": REDIS_CLIENT_IN_BRIDGE,
    "test_utils.test_transactiontestcase.TestSerializedRollbackInhibitsPostMigrate.test": (
        SERIALIZED_CONTENTS_ON_THE_THREAD
    ),
}


def expected(test_id: str, database: str, mode: str) -> Expected | None:
    """The known-failure entry for ``test_id`` on ``database`` in ``mode``, if any."""
    entry = EXPECTED.get(test_id)
    if entry and database in entry.databases and mode in entry.modes:
        return entry
    return None
