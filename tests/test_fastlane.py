"""The ORM fast lane: get() by exact values reuses its shape's compiled SQL."""

import datetime

import pytest
from django.db import DatabaseError, connection, connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tandem import native
from tandem.db import fastlane
from tests.app.models import Author, Book, Counter

pytestmark = pytest.mark.django_db(transaction=True)


def gets(model):
    """What the ``get()`` lane learned for ``model``: shapes it takes, rules out, and calls it served."""
    return fastlane.stats(model)["get"]


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
    assert gets(Book) == fastlane.LaneStats(learned=1, ruled_out=0, served=0)
    with CaptureQueriesContext(connections["default"]) as queries:
        fast = Book.objects.get(pk=book.pk)
    assert len(queries) == 1  # counted as any query: assertNumQueries sees it
    assert gets(Book).served == 1
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
    assert gets(Book) == fastlane.LaneStats(learned=2, ruled_out=0, served=2)


def test_missing_and_multiple_rows_raise_as_django_does(book):
    Book.objects.create(title="Again", author=book.author, pages=387)
    for _ in range(2):
        with pytest.raises(Book.DoesNotExist, match=r"^Book matching query does not exist\.$"):
            Book.objects.get(pk=10**9)
        with pytest.raises(
            Book.MultipleObjectsReturned, match=r"^get\(\) returned more than one Book -- it returned 2!$"
        ):
            Book.objects.get(pages=387)
    assert gets(Book).served == 2  # the second round: both raised from the fast lane
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
    assert gets(Book).learned == 0 and gets(Book).served == 0


def test_settings_and_schema_edits_end_the_compiled_shapes(book):
    Counter.objects.create(name="hits")
    Counter.objects.get(name="hits")
    assert gets(Counter).learned == 1
    with override_settings(USE_THOUSAND_SEPARATOR=True):
        assert gets(Counter).learned == 0
    Counter.objects.get(name="hits")
    assert gets(Counter).learned == 1
    with connection.schema_editor():
        pass
    assert gets(Counter).learned == 0


def test_a_changed_table_name_is_not_served_from_an_old_plan(book):
    Book.objects.get(pk=book.pk)
    assert gets(Book).learned == 1
    original = Book._meta.db_table
    Book._meta.db_table = "elsewhere"
    try:
        assert gets(Book) == fastlane.LaneStats(learned=0, ruled_out=1, served=0)
        with pytest.raises(DatabaseError):  # Django's lane, on the new table (which does not exist)
            Book.objects.get(pk=book.pk)
    finally:
        Book._meta.db_table = original
    assert Book.objects.get(pk=book.pk).pk == book.pk
    assert gets(Book) == fastlane.LaneStats(learned=1, ruled_out=0, served=1)  # the old plan again


@override_settings(TANDEM_FAST_LANE=False)
def test_the_setting_turns_it_off(book):
    Book.objects.get(pk=book.pk)
    Book.objects.get(pk=book.pk)
    assert all(lane == fastlane.LaneStats(0, 0, 0) for lane in fastlane.stats().values())


async def test_aget_takes_the_fast_lane_too(book):
    first = await Book.objects.aget(pk=book.pk)
    second = await Book.objects.aget(pk=book.pk)
    assert gets(Book) == fastlane.LaneStats(learned=1, ruled_out=0, served=1)
    assert fields_of(first) == fields_of(second)
    assert await native(lambda: Book.objects.get(pk=book.pk).title)() == book.title
    assert gets(Book).served == 2


def test_naive_datetimes_warn_as_with_django(book):
    naive = datetime.datetime(2020, 1, 1)
    for _ in range(2):
        with (
            pytest.warns(RuntimeWarning, match="received a naive datetime"),
            pytest.raises(Book.DoesNotExist),
        ):
            Book.objects.get(published=naive)
    assert gets(Book).served == 1  # the second warned on the fast lane


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
    assert gets(Counter) == fastlane.LaneStats(learned=1, ruled_out=0, served=1)  # 5, the second time


def test_shapes_are_kept_up_to_the_limit_per_model(book, monkeypatch):
    monkeypatch.setattr(fastlane.cache, "MAX_SHAPES", 2)
    for _ in range(2):
        assert Book.objects.get(pk=book.pk).pk == book.pk
        assert Book.objects.get(pk=str(book.pk)).pk == book.pk
        assert Book.objects.get(title=book.title).pk == book.pk  # past the limit: Django's lane
    assert gets(Book) == fastlane.LaneStats(learned=2, ruled_out=0, served=2)
