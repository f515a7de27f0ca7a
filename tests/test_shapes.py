"""The fast lane for querysets: filter() and the SQL built once per shape, then reused."""

import datetime

import pytest
from django.db import connections
from django.db.models import Count
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tandem.db import fastlane
from tandem.db.fastlane import cache
from tests.app.models import Author, Book

pytestmark = pytest.mark.django_db(transaction=True)


def learned(lane, model):
    """The shapes learned for ``model``: how many can take the fast lane, how many cannot."""
    stats = fastlane.stats(model)[lane]
    return stats.learned, stats.ruled_out


def served(lane, model):
    """How many calls the lane served for ``model``."""
    return fastlane.stats(model)[lane].served


def nothing_learned():
    """No lane holds any shape, of any model."""
    return all(s.learned == s.ruled_out == 0 for s in fastlane.stats().values())


def djangos(make):
    """``make()``'s result with the fast lane off: what Django answers."""
    with override_settings(TANDEM_FAST_LANE=False):
        return make()


@pytest.fixture
def shelf():
    fastlane.forget()
    start = timezone.now().replace(microsecond=654321)
    authors = [Author.objects.create(name=name) for name in ("Le Guin", "Jemisin")]
    for number, author in enumerate(authors * 15):
        Book.objects.create(
            title=f"Book {number}",
            author=author,
            pages=100 + number,
            published=start + datetime.timedelta(days=number),
        )
    return authors


def values_page(author, pages=0):
    return list(
        Book.objects.filter(author_id=author.pk, pages__gte=pages)
        .order_by("-pages")
        .values("id", "title", "pages", "published")[:5]
    )


def model_page(author):
    return list(Book.objects.filter(author=author.pk).order_by("pk")[:4])


def test_a_values_page_is_learned_once_then_reused_with_new_values(shelf):
    le_guin, jemisin = shelf
    expected = djangos(lambda: (values_page(le_guin), values_page(jemisin), values_page(jemisin, pages=125)))
    first = values_page(le_guin)
    assert learned("filter", Book) == (1, 0) and learned("as_sql", Book) == (1, 0)
    with CaptureQueriesContext(connections["default"]) as queries:
        again, other, fewer = values_page(le_guin), values_page(jemisin), values_page(jemisin, pages=125)
    assert len(queries) == 3  # counted as any query
    assert learned("as_sql", Book) == (1, 0)  # one shape, whatever the values
    assert served("filter", Book) == served("as_sql", Book) == 3
    assert (again, other, fewer) == expected and first == again
    assert other != first and len(fewer) == 3  # the new values were sent
    assert all(row["published"].tzinfo is not None for row in again)  # the converters ran


def test_a_model_page_builds_the_instances_django_builds(shelf):
    le_guin, jemisin = shelf
    slow = djangos(lambda: model_page(jemisin))
    model_page(le_guin)
    fast = model_page(jemisin)
    assert learned("as_sql", Book)[0] == 1 and served("as_sql", Book) == 1
    assert len(fast) == 4 and all(isinstance(b, Book) for b in fast)
    assert [(b.pk, b.title, b.author_id, b.published) for b in fast] == [
        (b.pk, b.title, b.author_id, b.published) for b in slow
    ]
    assert all(b._state.db == "default" and not b._state.adding for b in fast)


def test_the_sql_is_djangos(shelf):
    le_guin, _ = shelf
    query = Book.objects.filter(author_id=le_guin.pk, title="Book 2").order_by("title").values("title")
    slow = djangos(lambda: str(query.filter(pages__lt=500).query))
    for _ in range(2):
        fast = str(query.filter(pages__lt=500).query)
    assert learned("as_sql", Book)[0] >= 1 and served("as_sql", Book) >= 1
    assert fast == slow


def test_a_filtered_queryset_goes_on_as_djangos_does(shelf):
    le_guin, jemisin = shelf
    Book.objects.filter(author_id=le_guin.pk)  # learned
    mine = Book.objects.filter(author_id=jemisin.pk)  # rebuilt from the learned query
    assert mine.count() == 15 and mine.exclude(pages__lt=110).count() == djangos(
        lambda: Book.objects.filter(author_id=jemisin.pk).exclude(pages__lt=110).count()
    )
    assert mine.filter(title="Book 1").exists() and not mine.filter(title="Book 0").exists()
    assert mine.update(pages=1) == 15
    assert Book.objects.filter(pages=1).count() == 15
    assert Book.objects.filter(author_id=le_guin.pk).aggregate(n=Count("pk")) == {"n": 15}
    assert mine.delete()[0] == 15 and Book.objects.count() == 15


def test_shapes_the_fast_lane_cannot_take_are_djangos(shelf):
    le_guin, _ = shelf
    makes = [
        lambda: list(Book.objects.filter(author__name="Le Guin").values_list("pk", flat=True)),  # a join
        lambda: list(Book.objects.filter(published__isnull=False).values_list("pk", flat=True)),
        lambda: list(Book.objects.filter(pages__in=[100, 102]).values_list("pk", flat=True)),
        lambda: list(Book.objects.filter(title__startswith="Book 1").values_list("pk", flat=True)),
        lambda: list(Book.objects.filter(author_id=le_guin.pk).annotate(n=Count("categories")).values("n")),
        lambda: list(Book.objects.filter(author_id=le_guin.pk).select_related("author")),
        lambda: list(Book.objects.filter(author_id=le_guin.pk).distinct().values("title")),
        lambda: list(Book.objects.filter(author_id=le_guin.pk).values("author__name")),
        lambda: list(Author.objects.filter(pk__in=Book.objects.filter(pages=101).values("author_id"))),
    ]
    expected = [djangos(make) for make in makes]
    assert [make() for make in makes] == [make() for make in makes] == expected
    assert learned("as_sql", Book)[0] == 0
    # filter(author_id=...) and filter(pages=...) themselves are simple (what follows them
    # is not); the join, isnull and startswith filters are not; a list is not even a shape.
    assert learned("filter", Book) == (2, 3)


def test_an_integer_beyond_its_column_gets_djangos_answer(shelf):
    def make():
        beyond = 10**30
        rows = list(Book.objects.filter(pages=beyond).values("pk"))
        return rows, Book.objects.filter(pages__lt=beyond).count()

    expected = djangos(make)
    assert make() == make() == expected == ([], 30)


def test_settings_and_schema_edits_forget_the_shapes(shelf):
    le_guin, _ = shelf
    values_page(le_guin)
    with override_settings(TANDEM_FAST_LANE=False):
        assert nothing_learned()
        values_page(le_guin)
        assert nothing_learned()  # off: nothing learned
    values_page(le_guin)
    assert learned("as_sql", Book)[0] == 1
    with connections["default"].schema_editor():
        pass
    assert nothing_learned()


def test_a_paginator_does_not_grow_the_shapes_without_bound(shelf, monkeypatch):
    monkeypatch.setattr(cache, "MAX_SHAPES", 3)
    pks = Book.objects.order_by("pk").values_list("pk", flat=True)
    pages = [pk for n in range(0, 20, 2) for pk in pks[n : n + 2]]
    assert sum(learned("as_sql", Book)) == 3  # ten pages, ten shapes: the first three kept
    assert pages == djangos(lambda: list(pks[:20]))


async def test_async_iteration_takes_the_fast_lane_too(shelf):
    le_guin, jemisin = shelf

    async def page(author):
        return [row async for row in Book.objects.filter(author_id=author.pk).order_by("pk").values("pk")[:3]]

    first = await page(le_guin)
    second = await page(jemisin)
    assert first != second and len(second) == 3
    assert learned("as_sql", Book) == (1, 0) and served("as_sql", Book) == 1
