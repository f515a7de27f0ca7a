"""Templates and forms whose work queries the database, awaited from async code."""

import threading

import pytest
from django.core.exceptions import SynchronousOnlyOperation
from django.forms import modelformset_factory
from django.http import HttpRequest

from tandem.shortcuts import arender
from tandem.template.loader import arender_to_string
from tests import recorder
from tests.app.forms import BookForm, CounterForm, PickAuthorForm
from tests.app.models import Author, Book, Counter
from tests.test_request_path import serve

pytestmark = pytest.mark.django_db(transaction=True)


async def library():
    ursula = await Author.objects.acreate(name="Ursula")
    italo = await Author.objects.acreate(name="Italo")
    await Book.objects.acreate(title="Earthsea", author=ursula)
    await Book.objects.acreate(title="Invisible Cities", author=italo)
    return ursula, italo


def assert_on_the_loop(queries):
    loop_thread = threading.get_ident()
    assert queries and all(q.thread == loop_thread and q.bridged for q in queries), queries


# -- templates -----------------------------------------------------------------


async def test_arender_awaits_the_queries_a_template_makes():
    await library()
    recorder.log.clear()
    response = await arender(HttpRequest(), "library.html", {"books": Book.objects.order_by("title")})
    assert response.status_code == 200
    assert response.content.decode().strip() == "Earthsea by Ursula;Invisible Cities by Italo;"
    assert len(recorder.log) == 3  # the books, then each book's author, lazily
    assert_on_the_loop(recorder.log)


async def test_arender_to_string():
    await library()
    text = await arender_to_string("library.html", {"books": Book.objects.filter(title__startswith="E")})
    assert text.strip() == "Earthsea by Ursula;"


async def test_a_template_response_from_an_async_view_renders_natively():
    await library()
    async with serve() as client:
        response = await client.get("/library/")
    assert response.text.strip() == "Earthsea by Ursula;Invisible Cities by Italo;"


# -- forms ---------------------------------------------------------------------


async def test_model_choice_validation_needs_ais_valid():
    ursula, _ = await library()
    with pytest.raises(SynchronousOnlyOperation):
        PickAuthorForm({"author": ursula.pk}).is_valid()
    form = PickAuthorForm({"author": ursula.pk})
    assert await form.ais_valid()
    assert form.cleaned_data["author"] == ursula
    missing = PickAuthorForm({"author": 10**9})
    assert not await missing.ais_valid()
    assert "author" in missing.errors


async def test_unique_checks_and_asave():
    await Counter.objects.acreate(name="taken")
    duplicate = CounterForm({"name": "taken", "value": 1})
    assert not await duplicate.ais_valid()
    assert "already exists" in str(duplicate.errors["name"])
    form = CounterForm({"name": "fresh", "value": 7})
    await form.afull_clean()
    assert form.is_bound and not form.errors
    recorder.log.clear()
    counter = await form.asave()
    assert (await Counter.objects.aget(name="fresh")).value == counter.value == 7
    assert_on_the_loop(recorder.log)


async def test_asave_without_commit_leaves_the_save_to_you():
    ursula, _ = await library()
    form = BookForm({"title": "The Dispossessed", "author": ursula.pk, "pages": 387})
    assert await form.ais_valid()
    book = await form.asave(commit=False)
    assert book.pk is None
    await book.asave()
    assert await Book.objects.filter(author=ursula).acount() == 2


async def test_model_formsets():
    AuthorFormSet = modelformset_factory(Author, fields=["name"], extra=2)  # noqa: N806
    data = {
        "form-TOTAL_FORMS": "2",
        "form-INITIAL_FORMS": "0",
        "form-0-name": "Octavia",
        "form-1-name": "Stanisław",
    }
    formset = AuthorFormSet(data, queryset=Author.objects.none())
    assert await formset.ais_valid()
    saved = await formset.asave()
    assert sorted(a.name for a in saved) == ["Octavia", "Stanisław"]
    assert await Author.objects.acount() == 2


# -- relations -------------------------------------------------------------------


async def test_aget_related_follows_a_foreign_key_and_caches_it():
    from tandem.models import aget_related

    ursula, _ = await library()
    book = await Book.objects.aget(title="Earthsea")
    with pytest.raises(SynchronousOnlyOperation):
        book.author  # noqa: B018 - the lazy access async code may not make
    assert await aget_related(book, "author") == ursula
    assert book.author.name == "Ursula"  # cached now: no query, no error


async def test_aget_related_refuses_to_many_relations_and_unknown_names():
    from tandem.models import aget_related

    ursula, _ = await library()
    with pytest.raises(TypeError, match="to-many relation"):
        await aget_related(ursula, "books")
    with pytest.raises(TypeError, match="has no relation 'publisher'"):
        await aget_related(ursula, "publisher")


# -- the same results as Django's sync API, and a free loop --------------------


async def test_results_equal_djangos_sync_api():
    from asgiref.sync import sync_to_async
    from django.shortcuts import render

    await library()
    italo = await Author.objects.aget(name="Italo")

    def books():
        return Book.objects.order_by("title")

    theirs = await sync_to_async(render, thread_sensitive=False)(
        HttpRequest(), "library.html", {"books": books()}
    )
    ours = await arender(HttpRequest(), "library.html", {"books": books()})
    assert ours.content == theirs.content

    for data in ({"title": "Earthsea", "author": italo.pk}, {"title": "", "author": 999}, {"title": "New"}):

        def sync_errors(data=data):
            form = BookForm(data)
            return form.is_valid(), form.errors.get_json_data()

        form = BookForm(data)
        assert (await form.ais_valid(), form.errors.get_json_data()) == await sync_to_async(
            sync_errors, thread_sensitive=False
        )()


async def test_two_hundred_renders_and_validations_leave_the_loop_free():
    import asyncio

    from tests.watchdog import longest_stall

    ursula, _ = await library()

    async def user(n):
        # Arrivals over a second, as requests come: the loop has work, not a backlog.
        await asyncio.sleep(n / 200)
        await arender(HttpRequest(), "library.html", {"books": Book.objects.order_by("title")})
        assert await BookForm({"title": f"Book {n}", "author": ursula.pk, "pages": 100}).ais_valid()

    await asyncio.gather(*(user(n) for n in range(200)))  # warm: the pool's connections
    stall = await longest_stall(asyncio.gather(*(user(n) for n in range(200))))
    assert stall < 0.05, f"the loop stalled for {stall * 1000:.0f} ms"
