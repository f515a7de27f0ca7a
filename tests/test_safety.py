"""Safety: nothing may block the loop; errors say what to do instead."""

import pytest
from django.core.exceptions import SynchronousOnlyOperation

from tandem import native
from tests.app.models import Author, Book

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "stock"])


async def test_sync_orm_call_in_async_code_still_raises():
    with pytest.raises(SynchronousOnlyOperation, match=r"aget, acreate"):
        Author.objects.count()


async def test_lazy_foreign_key_points_to_select_related():
    author = await Author.objects.acreate(name="A")
    await Book.objects.acreate(title="T", author=author)
    book = await Book.objects.afirst()
    with pytest.raises(SynchronousOnlyOperation, match=r"select_related\(\).*native"):
        book.author  # noqa: B018 - the lazy load is the point
    loaded = await Book.objects.select_related("author").afirst()
    assert loaded.author.name == "A"


async def test_deferred_field_points_to_only_and_native():
    await Author.objects.acreate(name="A")
    author = await Author.objects.defer("name").afirst()
    with pytest.raises(SynchronousOnlyOperation, match=r"only\(\)"):
        author.name  # noqa: B018
    assert await native(lambda: author.name)() == "A"


async def test_stock_backend_inside_the_bridge_still_raises():
    with pytest.raises(SynchronousOnlyOperation):
        await native(lambda: Author.objects.using("stock").count())()


def test_sync_code_outside_any_loop_is_unaffected():
    assert Author.objects.count() == 0


async def test_django_allow_async_unsafe_is_honoured(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    assert Author.objects.count() == 0  # blocks the loop: the user asked for it
