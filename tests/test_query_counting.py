"""Counting queries sees every task's queries (issue 13).

``assertNumQueries``, ``CaptureQueriesContext`` and pytest-django's
``django_assert_num_queries`` count the queries of their alias made inside
the block, whichever task runs them and on whichever connection: in a
``TestCase`` (every task shares the test's connection) and in a
``TransactionTestCase`` (every task has a pooled connection of its own)
alike, from sync and async tests. Other aliases' queries are not counted,
and outside a block nothing more is logged than Django logs.
"""

import asyncio
import contextvars
import threading

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection, connections
from django.db.backends.signals import connection_created
from django.test import AsyncClient, TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext

from tandem import aatomic
from tests.app.models import Author


async def count_authors_in_tasks(n: int) -> list[int]:
    """``n`` queries, one in each of ``n`` tasks started with ``asyncio.gather``."""
    return await asyncio.gather(*(Author.objects.acount() for _ in range(n)))


async def logging_state_of_a_new_task(using: str = "default") -> tuple[bool, int]:
    """Whether a new task's wrapper logs queries, and how many it logged, after one query."""

    async def child():
        await Author.objects.using(using).acount()
        wrapper = connections[using]
        return wrapper.queries_logged, len(wrapper.queries_log)

    return await asyncio.create_task(child())


def statements(captured) -> list[str]:
    """The first word of each captured query (``SAVEPOINT``, ``INSERT``...)."""
    return [query["sql"].split()[0].upper() for query in captured]


class CountingTests:
    """Run as a ``TestCase`` and as a ``TransactionTestCase`` (below)."""

    # -- async tests -------------------------------------------------------------
    async def test_a_query_of_the_test_itself(self):
        author = await Author.objects.acreate(name="Ursula")
        with self.assertNumQueries(1):
            self.assertEqual((await Author.objects.aget(pk=author.pk)).name, "Ursula")

    async def test_queries_of_gathered_tasks(self):
        with self.assertNumQueries(3):
            self.assertEqual(await count_authors_in_tasks(3), [0, 0, 0])

    async def test_queries_of_tasks_the_tasks_start(self):
        async def parent():
            await Author.objects.acreate(name="parent")
            await count_authors_in_tasks(2)

        with CaptureQueriesContext(connection) as captured:
            await asyncio.gather(parent(), parent())
        self.assertEqual(sorted(statements(captured)), ["INSERT"] * 2 + ["SELECT"] * 4)

    async def test_a_task_started_before_the_block(self):
        # Counted as in a TestCase, where every task shares the test's connection.
        go = asyncio.Event()

        async def waiting():
            await go.wait()
            return await Author.objects.acount()

        task = asyncio.create_task(waiting())
        await asyncio.sleep(0)
        with self.assertNumQueries(1):
            go.set()
            self.assertEqual(await task, 0)

    async def test_async_with(self):
        async with self.assertNumQueries(2):
            await Author.objects.acreate(name="a")
            await asyncio.create_task(Author.objects.acount())

    async def test_a_wrong_count_still_fails(self):
        with self.assertRaisesMessage(AssertionError, "3 queries executed, 2 expected"):
            with self.assertNumQueries(2):
                await count_authors_in_tasks(3)
        with self.assertRaisesMessage(AssertionError, "3 queries executed, 4 expected"):
            async with self.assertNumQueries(4):
                await count_authors_in_tasks(3)

    async def test_aatomic_block_and_the_tasks_that_join_it(self):
        with CaptureQueriesContext(connection) as captured:
            async with aatomic():
                await Author.objects.acreate(name="in the block")
                await count_authors_in_tasks(2)
        # SAVEPOINT ... RELEASE inside a TestCase's transaction, BEGIN ... COMMIT
        # (BEGIN IMMEDIATE on SQLite) on a TransactionTestCase's own connection.
        self.assertEqual(len(captured), 5)
        self.assertEqual(statements(captured)[1:4], ["INSERT", "SELECT", "SELECT"])

    async def test_tasks_with_aatomic_blocks_of_their_own(self):
        async def create(name):
            async with aatomic():
                await Author.objects.acreate(name=name)

        with self.assertNumQueries(6):  # each: BEGIN/SAVEPOINT, INSERT, COMMIT/RELEASE
            await asyncio.gather(create("a"), create("b"))
        self.assertEqual(await Author.objects.acount(), 2)

    async def test_sync_to_async_code(self):
        with self.assertNumQueries(2):
            await sync_to_async(Author.objects.count)()
            await sync_to_async(Author.objects.count, thread_sensitive=False)()

    async def test_a_view_under_async_client(self):
        author = await Author.objects.acreate(name="Ursula")
        with self.assertNumQueries(2):  # the author, the count of their books
            response = await AsyncClient().get(f"/authors/{author.pk}/")
        self.assertEqual(response.json(), {"name": "Ursula", "books": 0})

    async def test_nested_blocks(self):
        with self.assertNumQueries(3):
            await Author.objects.acount()
            with self.assertNumQueries(2):
                await count_authors_in_tasks(2)

    async def test_outside_a_block_tasks_log_nothing(self):
        self.assertEqual(await logging_state_of_a_new_task(), (False, 0))
        with self.assertNumQueries(1):
            logged, _ = await logging_state_of_a_new_task()
        self.assertTrue(logged)
        # The block has ended: back to what Django logs.
        self.assertEqual((await logging_state_of_a_new_task())[0], False)

    async def test_under_debug_each_query_is_counted_once(self):
        with self.settings(DEBUG=True), self.assertNumQueries(3):
            await count_authors_in_tasks(3)

    async def test_what_a_new_connection_runs_is_not_counted(self):
        # A task takes a pooled connection (and runs Django's connect()) when it
        # needs one: inside the block. As with Django's own connection, which
        # the block connects before counting, what connecting runs is not counted.
        def set_up(sender, connection, **kwargs):
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")

        connection_created.connect(set_up)
        try:
            with self.assertNumQueries(4):
                await count_authors_in_tasks(3)
                await sync_to_async(Author.objects.count, thread_sensitive=False)()
        finally:
            connection_created.disconnect(set_up)

    # -- sync tests --------------------------------------------------------------
    def test_sync_queries(self):
        with self.assertNumQueries(2):
            Author.objects.create(name="sync")
            self.assertEqual(Author.objects.count(), 1)

    def test_sync_test_running_async_code(self):
        with self.assertNumQueries(4):
            Author.objects.count()
            async_to_sync(count_authors_in_tasks)(3)

    def test_sync_wrong_count_still_fails(self):
        with self.assertRaisesMessage(AssertionError, "3 queries executed, 1 expected"):
            with self.assertNumQueries(1):
                async_to_sync(count_authors_in_tasks)(3)


class CountingInTestCase(CountingTests, TestCase):
    """Every task shares the test's connection and transaction."""


class CountingInTransactionTestCase(CountingTests, TransactionTestCase):
    """Every task has a pooled connection of its own."""

    def test_a_thread_outside_the_block_is_not_counted(self):
        # As in stock Django: code that did not start inside the block (here, a
        # thread running in a context of its own) has its queries on its own.
        def count_elsewhere():
            try:
                contextvars.Context().run(Author.objects.count)
            finally:
                connections.close_all()

        with self.assertNumQueries(1):
            Author.objects.count()
            thread = threading.Thread(target=count_elsewhere)
            thread.start()
            thread.join()


class OtherAliasTests(TransactionTestCase):
    """A block counts its own alias only ("replica" mirrors "default": same database).

    A ``TransactionTestCase``: there each task has a wrapper per alias, all
    feeding the open blocks. (A ``TestCase`` can't hold a transaction on a
    mirror of an SQLite file beside the default's: the file is locked.)
    """

    databases = {"default", "replica"}

    async def test_other_aliases_queries_are_not_counted(self):
        with self.assertNumQueries(2), self.assertNumQueries(1, using="replica"):
            await asyncio.gather(
                Author.objects.acount(),
                Author.objects.acount(),
                Author.objects.using("replica").acount(),
            )

    async def test_another_alias_block_leaves_tasks_unlogged(self):
        with self.assertNumQueries(0, using="replica"):
            self.assertEqual(await logging_state_of_a_new_task(), (False, 0))
        with self.assertNumQueries(0):
            self.assertEqual(await logging_state_of_a_new_task("replica"), (False, 0))


# -- pytest-django -----------------------------------------------------------------
@pytest.fixture(params=["db", "transactional_db"])
def database(request):
    """The test transaction (every task shares it), then tasks' own pooled connections."""
    return request.getfixturevalue(request.param)


async def test_django_assert_num_queries(database, django_assert_num_queries):
    with django_assert_num_queries(3):
        await count_authors_in_tasks(3)


@pytest.mark.django_db(transaction=True)
async def test_django_assert_num_queries_still_fails(django_assert_num_queries):
    with pytest.raises(pytest.fail.Exception, match="Expected to perform 2 queries but 3 were done"):
        with django_assert_num_queries(2):
            await count_authors_in_tasks(3)


@pytest.mark.django_db(transaction=True)
async def test_django_assert_max_num_queries(django_assert_max_num_queries):
    with django_assert_max_num_queries(3):
        await count_authors_in_tasks(3)
    with pytest.raises(pytest.fail.Exception, match="Expected to perform 2 queries or less but 3 were done"):
        with django_assert_max_num_queries(2):
            await count_authors_in_tasks(3)


@pytest.mark.django_db(transaction=True)
def test_django_assert_num_queries_in_a_sync_test(django_assert_num_queries):
    with django_assert_num_queries(3):
        async_to_sync(count_authors_in_tasks)(3)
