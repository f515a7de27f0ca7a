"""Django's own async ORM API runs natively for tandem aliases."""

import asyncio
import faulthandler
import gc
import threading

import django
import pytest
from asgiref.sync import sync_to_async
from django.contrib.contenttypes.models import ContentType
from django.db import connection, connections
from django.db.models import Count, Sum
from django.http import Http404
from django.shortcuts import aget_list_or_404, aget_object_or_404

from tandem import native
from tests import recorder
from tests.app.models import Author, Book, Category, Tag
from tests.db import backend_pid

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "stock"])


@pytest.fixture
def queries():
    recorder.log.clear()
    return recorder.log


def assert_native(queries):
    loop_thread = threading.get_ident()
    assert queries, "no query ran"
    assert all(q.bridged and q.thread == loop_thread for q in queries), queries


async def make_library():
    author = await Author.objects.acreate(name="Ursula")
    other = await Author.objects.acreate(name="Italo")
    await Book.objects.abulk_create(
        [Book(title=f"B{i}", author=author if i % 2 else other, pages=i * 10) for i in range(10)]
    )
    return author, other


async def test_queryset_methods(queries):
    author, _ = await make_library()
    assert (await Author.objects.aget(pk=author.pk)).name == "Ursula"
    assert await Book.objects.acount() == 10
    assert await Book.objects.filter(pages__gt=50).aexists()
    assert await Book.objects.acontains(await Book.objects.afirst())
    assert (await Book.objects.order_by("pages").alast()).pages == 90
    assert (await Book.objects.aearliest("pages")).pages == 0
    assert (await Book.objects.alatest("pages")).pages == 90
    assert (await Book.objects.aaggregate(total=Sum("pages")))["total"] == 450
    assert len(await Author.objects.ain_bulk([author.pk])) == 1
    obj, created = await Author.objects.aget_or_create(name="New")
    assert created
    obj, created = await Author.objects.aupdate_or_create(name="New", defaults={"name": "Newer"})
    assert not created and obj.name == "Newer"
    books = [b async for b in Book.objects.all()]
    await Book.objects.abulk_update([*books[:2]], ["pages"])
    assert await Book.objects.filter(pages__lt=30).aupdate(pages=1) == 3
    deleted, _ = await Book.objects.filter(pages=1).adelete()
    assert deleted == 3
    assert_native(queries)


async def test_explain_runs_natively(queries):
    plan = await Book.objects.filter(pages=10).aexplain()
    assert "app_book" in plan
    assert_native(queries)


async def test_async_iteration_and_aiterator_with_server_side_cursor(queries):
    await make_library()
    titles = [b.title async for b in Book.objects.select_related("author").order_by("title")]
    assert titles[:2] == ["B0", "B1"]
    streamed = [b.pk async for b in Book.objects.aiterator(chunk_size=3)]
    assert len(streamed) == 10
    raw = [a.name async for a in Author.objects.raw("SELECT * FROM app_author ORDER BY name")]
    assert raw == ["Italo", "Ursula"]
    assert_native(queries)


async def test_aiterator_keeps_its_connection_between_chunks():
    await make_library()
    seen = []
    async for book in Book.objects.order_by("pk").aiterator(chunk_size=2):
        seen.append(book.pk)
        await asyncio.sleep(0)  # other tasks run between chunks
        await Author.objects.acount()  # and this task uses the ORM meanwhile
    assert len(seen) == 10


async def test_model_instance_methods(queries):
    author = Author(name="Saved")
    await author.asave()
    author.name = "Renamed"
    await author.asave(update_fields=["name"])
    stale = await Author.objects.aget(pk=author.pk)
    await Author.objects.filter(pk=author.pk).aupdate(name="Fresh")
    await stale.arefresh_from_db()
    assert stale.name == "Fresh"
    await stale.adelete()
    assert not await Author.objects.filter(pk=author.pk).aexists()
    assert_native(queries)


async def test_related_managers(queries):
    author, _ = await make_library()
    assert await author.books.acount() == 5
    book = await author.books.acreate(title="Via manager")
    fantasy = await Category.objects.acreate(name="Fantasy")
    await book.categories.aadd(fantasy)
    assert [c.name async for c in book.categories.all()] == ["Fantasy"]
    await book.categories.aremove(fantasy)
    await book.categories.aset([fantasy])
    await fantasy.books.aclear()
    assert await book.categories.acount() == 0
    # Creating a generic relation manager looks up its ContentType synchronously
    # (in stock Django too); it is cached per process after the first lookup.
    await native(ContentType.objects.get_for_model)(Author)
    tag = await author.tags.acreate(name="classic")
    assert [t.pk async for t in author.tags.all()] == [tag.pk]
    await author.tags.aclear()
    assert await Tag.objects.acount() == 0
    assert_native(queries)


async def test_prefetch_and_shortcuts(queries):
    author, _ = await make_library()
    authors = [a async for a in Author.objects.order_by("name")]
    await django.db.models.aprefetch_related_objects(authors, "books")
    assert [len(a.books.all()) for a in authors] == [5, 5]  # no query: prefetched
    assert (await aget_object_or_404(Author, pk=author.pk)).pk == author.pk
    with pytest.raises(Http404):
        await aget_object_or_404(Author, pk=-1)
    assert len(await aget_list_or_404(Book, author=author)) == 5
    counts = [a.n async for a in Author.objects.annotate(n=Count("books"))]
    assert counts == [5, 5]
    assert_native(queries)


@pytest.mark.skipif(django.VERSION < (6, 0), reason="AsyncPaginator is new in Django 6.0")
async def test_async_paginator(queries):
    from django.core.paginator import AsyncPaginator

    await make_library()
    paginator = AsyncPaginator(Book.objects.order_by("pk"), 4)
    assert await paginator.acount() == 10
    page = await paginator.apage(3)
    assert [b.title for b in await page.aget_object_list()] == ["B8", "B9"]
    assert_native(queries)


async def test_stock_alias_keeps_stock_behaviour(queries):
    try:
        author = await Author.objects.using("stock").acreate(name="Stock")
        assert await Author.objects.using("stock").filter(pk=author.pk).aexists()
    finally:  # stock Django leaves its worker thread's connection open
        await sync_to_async(lambda: connections["stock"].close())()
    stock = [q for q in queries if q.alias == "stock"]
    assert stock and not any(q.bridged for q in stock)
    assert all(q.thread != threading.get_ident() for q in stock)  # a sync_to_async thread


async def test_signals_with_async_receivers_run_on_the_loop():
    from django.db.models.signals import post_save

    seen = []

    async def receiver(sender, instance, created, **kwargs):
        seen.append((instance.name, await Author.objects.filter(pk=instance.pk).aexists()))

    post_save.connect(receiver, sender=Author)
    try:
        await Author.objects.acreate(name="Signalled")
    finally:
        post_save.disconnect(receiver, sender=Author)
    assert seen == [("Signalled", True)]


def test_sync_path_is_stock_django():
    author = Author.objects.create(name="Sync")
    assert Author.objects.get(pk=author.pk).name == "Sync"
    assert list(Author.objects.iterator(chunk_size=1)) == [author]


async def test_aiterator_left_early_never_blocks_the_loop():
    # Leaving an aiterator() loop early leaves its server-side cursor to be
    # closed later, by whichever task finalises the generator. A blocking
    # close there would freeze the loop: the watchdog turns that into a failure.
    faulthandler.dump_traceback_later(30, exit=True)
    try:
        await make_library()
        for _ in range(3):
            async for _book in Book.objects.order_by("pk").aiterator(chunk_size=2):
                break
            # Straight on, on the same (pinned) connection, while the generator's
            # finaliser runs in another task.
            await native(_slow_query)()
            await asyncio.gather(Book.objects.acount(), Author.objects.acount())
            gc.collect()
        for _ in range(10):
            await asyncio.sleep(0.01)  # the deferred closes run as units of their own
        assert await Book.objects.acount() == 10
        assert connection.pinned_cursors == 0
    finally:
        faulthandler.cancel_dump_traceback_later()


def _slow_query():
    backend_pid(sleep=0.2)
