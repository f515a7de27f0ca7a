"""Users' async tests run inside the test's transaction (issue: testing with tandem)."""

import asyncio

import pytest
from django.test import AsyncClient, TestCase, TransactionTestCase

from tests.app.models import Author


class AsyncTestCaseTests(TestCase):
    """Django's TestCase: async tests see setUpTestData rows, writes roll back."""

    @classmethod
    def setUpTestData(cls):
        cls.author = Author.objects.create(name="from setUpTestData")

    async def test_1_sees_class_data_and_writes(self):
        fetched = await Author.objects.aget(pk=self.author.pk)
        self.assertEqual(fetched.name, "from setUpTestData")
        await Author.objects.acreate(name="written by test 1")
        counts = await asyncio.gather(*(Author.objects.acount() for _ in range(3)))
        self.assertEqual(counts, [2, 2, 2])  # parallel tasks share the test transaction

    async def test_2_previous_writes_were_rolled_back(self):
        self.assertEqual([a.name async for a in Author.objects.all()], ["from setUpTestData"])

    async def test_3_views_driven_by_async_client_see_the_data(self):
        response = await AsyncClient().get(f"/authors/{self.author.pk}/")
        self.assertEqual(response.json(), {"name": "from setUpTestData", "books": 0})


class AsyncTransactionTestCaseTests(TransactionTestCase):
    """TransactionTestCase: tasks use real pooled connections; tables are flushed after."""

    async def test_commits_for_real(self):
        await Author.objects.acreate(name="committed")
        self.assertEqual(await Author.objects.acount(), 1)


@pytest.fixture
def author(db):
    return Author.objects.create(name="fixture row")


@pytest.mark.django_db
async def test_pytest_django_marker_sees_fixture_rows(author):
    assert (await Author.objects.aget(pk=author.pk)).name == "fixture row"
    await Author.objects.acreate(name="rolled back")


@pytest.mark.django_db
async def test_pytest_django_rolled_back_the_previous_test():
    assert await Author.objects.acount() == 0


@pytest.mark.django_db(transaction=True)
async def test_pytest_django_transactional():
    await Author.objects.acreate(name="t")
    assert await Author.objects.acount() == 1


@pytest.mark.django_db
async def test_async_receivers_inside_the_test_transaction():
    from django.db.models.signals import post_save

    seen = []

    async def receiver(sender, instance, **kwargs):
        seen.append(await Author.objects.filter(pk=instance.pk).aexists())

    post_save.connect(receiver, sender=Author)
    try:
        await asyncio.wait_for(Author.objects.acreate(name="signalled"), 5)
    finally:
        post_save.disconnect(receiver, sender=Author)
    assert seen == [True]


@pytest.mark.django_db(transaction=True, databases=["default", "replica"])
async def test_mirror_aliases_reach_the_test_database_from_tasks():
    await Author.objects.acreate(name="written to the test database")
    mirrored = Author.objects.using("replica").filter(name="written to the test database")
    assert await mirrored.aexists()  # not the real database behind the mirror


class SyncToAsyncInTestCaseTests(TestCase):
    """As in stock Django, sync_to_async code of an async test sees its transaction."""

    @classmethod
    def setUpTestData(cls):
        cls.author = Author.objects.create(name="from setUpTestData")

    async def test_sync_to_async_sees_the_test_transaction(self):
        from asgiref.sync import sync_to_async

        names = await sync_to_async(lambda: [a.name for a in Author.objects.all()])()
        self.assertEqual(names, ["from setUpTestData"])
        await sync_to_async(Author.objects.create)(name="via sync_to_async")
        self.assertEqual(await Author.objects.acount(), 2)
