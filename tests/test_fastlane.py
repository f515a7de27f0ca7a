"""The ORM fast lane: get() by exact values reuses its shape's compiled SQL."""

import datetime

import pytest
from django.db import connection, connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tandem import native
from tandem.db.fastlane import get as fastlane
from tests.app.models import Author, Book, Counter

pytestmark = pytest.mark.django_db(transaction=True)


def plans(model):
    """The shapes the fast lane compiled for ``model`` (None: ruled out)."""
    return dict(fastlane._plans.get(model, {}))


def fields_of(obj):
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


@pytest.fixture
def book():
    fastlane.forget()
    author = Author.objects.create(name="Le Guin")
    published = timezone.now().replace(microsecond=123456)
    return Book.objects.create(title="The Dispossessed", author=author, pages=387, published=published)


def test_the_second_get_of_a_shape_takes_the_fast_lane_and_equals_djangos(book):
    first = Book.objects.get(pk=book.pk)  # Django's lane; the shape is learnt
    assert [p is not None for p in plans(Book).values()] == [True]
    with CaptureQueriesContext(connections["default"]) as queries:
        fast = Book.objects.get(pk=book.pk)
    assert len(queries) == 1  # counted as any query: assertNumQueries sees it
    with override_settings(TANDEM_FAST_LANE=False):
        slow = Book.objects.get(pk=book.pk)
    assert fields_of(fast) == fields_of(first) == fields_of(slow)
    assert fast.published == book.published and fast.published.tzinfo is not None  # converters ran
    assert fast._state.db == "default" and not fast._state.adding
    assert type(fast.pk) is int


def test_values_of_other_fields_and_types_are_their_own_shapes(book):
    for _ in range(2):
        assert Book.objects.get(title="The Dispossessed", pages=387).pk == book.pk
        assert Book.objects.get(pk=str(book.pk)).pk == book.pk  # a str: its own shape
    assert len([p for p in plans(Book).values() if p is not None]) == 2


def test_missing_and_multiple_rows_raise_as_django_does(book):
    Book.objects.create(title="Again", author=book.author, pages=387)
    for _ in range(2):
        with pytest.raises(Book.DoesNotExist, match=r"^Book matching query does not exist\.$"):
            Book.objects.get(pk=10**9)
        with pytest.raises(
            Book.MultipleObjectsReturned, match=r"^get\(\) returned more than one Book -- it returned 2!$"
        ):
            Book.objects.get(pages=387)
    with pytest.raises(ValueError, match="Field 'id' expected a number but got 'x'"):
        Book.objects.get(pk="x")  # the same error as Django's, from the same field method


def test_querysets_that_are_not_plain_take_djangos_lane(book):
    for _ in range(2):
        assert Book.objects.filter(pages__gt=1).get(pk=book.pk).pk == book.pk
        assert Book.objects.only("title").get(pk=book.pk).title == book.title
        assert Book.objects.select_related("author").get(pk=book.pk).author.name == "Le Guin"
        assert book.author.books.get(pk=book.pk).pk == book.pk  # a related manager filters
        with pytest.raises(Book.DoesNotExist):
            Book.objects.get(published=None)  # IS NULL: value-dependent SQL
        assert Book.objects.get(author=book.author).pk == book.pk  # a relation: not a simple field
    assert [p for p in plans(Book).values() if p is not None] == []


def test_settings_and_schema_edits_end_the_compiled_shapes(book):
    Counter.objects.create(name="hits")
    Counter.objects.get(name="hits")
    assert plans(Counter)
    with override_settings(USE_THOUSAND_SEPARATOR=True):
        assert not plans(Counter)
    Counter.objects.get(name="hits")
    assert plans(Counter)
    with connection.schema_editor():
        pass
    assert not plans(Counter)


def test_a_changed_table_name_is_not_served_from_an_old_plan(book):
    Book.objects.get(pk=book.pk)
    (plan,) = plans(Book).values()
    original = Book._meta.db_table
    Book._meta.db_table = "elsewhere"
    try:
        assert not fastlane._current(plan, Book)
    finally:
        Book._meta.db_table = original
    assert fastlane._current(plan, Book)


@override_settings(TANDEM_FAST_LANE=False)
def test_the_setting_turns_it_off(book):
    Book.objects.get(pk=book.pk)
    Book.objects.get(pk=book.pk)
    assert plans(Book) == {}


async def test_aget_takes_the_fast_lane_too(book):
    first = await Book.objects.aget(pk=book.pk)
    second = await Book.objects.aget(pk=book.pk)
    assert [p is not None for p in plans(Book).values()] == [True]
    assert fields_of(first) == fields_of(second)
    assert await native(lambda: Book.objects.get(pk=book.pk).title)() == book.title


def test_naive_datetimes_warn_as_with_django(book):
    naive = datetime.datetime(2020, 1, 1)
    for _ in range(2):
        with (
            pytest.warns(RuntimeWarning, match="received a naive datetime"),
            pytest.raises(Book.DoesNotExist),
        ):
            Book.objects.get(published=naive)


def outcome(fn):
    """What ``fn()`` did: its result or its exception's type, and how many queries it ran."""
    with CaptureQueriesContext(connections["default"]) as queries:
        try:
            result = fn().pk
        except Exception as exc:
            result = type(exc)
    return result, len(queries)


def test_an_integer_beyond_its_column_gets_djangos_answer_without_a_query(book):
    Counter.objects.create(name="c", value=5)
    huge = 2**70
    expected = {}
    with override_settings(TANDEM_FAST_LANE=False):
        for value in (huge, 5, huge):
            expected[value] = outcome(lambda value=value: Counter.objects.get(value=value))
    fastlane.forget()
    for value in (huge, 5, 5, huge):  # learnt from 5; huge is checked against the range each time
        assert outcome(lambda value=value: Counter.objects.get(value=value)) == expected[value]
    assert [p is not None for p in plans(Counter).values()] == [True]
