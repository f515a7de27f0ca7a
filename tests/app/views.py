from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import aget_object_or_404

from tests.app.models import Author
from tests.watchdog import block


async def author_detail(request, pk):
    author = await aget_object_or_404(Author, pk=pk)
    return JsonResponse({"name": author.name, "books": await author.books.acount()})


async def create_author(request):
    author = await Author.objects.acreate(name=request.GET.get("name", "x"))
    return JsonResponse({"id": author.pk})


@transaction.non_atomic_requests
async def create_author_non_atomic(request):
    author = await Author.objects.acreate(name=request.GET.get("name", "x"))
    return JsonResponse({"id": author.pk, "in_atomic": transaction.get_connection().in_atomic_block})


async def create_then_fail(request):
    await Author.objects.acreate(name=request.GET.get("name", "x"))
    raise ValueError("boom")


async def create_then_time_out(request):
    """Writes, then catches the timeout of a slow query and answers as if all went well."""
    from tandem import native
    from tests.db import long_query

    await Author.objects.acreate(name=request.GET.get("name", "x"))
    try:
        async with asyncio.timeout(0.2):
            await native(long_query)()
    except TimeoutError:
        pass
    return JsonResponse({"ok": True})


# -- the request path (tests/test_request_path.py) ----------------------------

import asyncio  # noqa: E402
import threading  # noqa: E402

from django.http import HttpResponse, StreamingHttpResponse  # noqa: E402
from django.template import engines  # noqa: E402
from django.template.response import TemplateResponse  # noqa: E402

from tandem import in_bridge  # noqa: E402
from tandem.handlers import in_thread, on_loop  # noqa: E402

# view name -> list of (thread ident, in bridge)
view_seen: dict[str, list[tuple[int, bool]]] = {}
cancelled: list[str] = []


def _where(name: str) -> dict:
    view_seen.setdefault(name, []).append((threading.get_ident(), in_bridge()))
    return {"thread": threading.get_ident(), "bridged": in_bridge()}


async def me_async(request):
    """The logged-in user and a session counter, the async way."""
    user = await request.auser()
    hits = await request.session.aget("hits", 0) + 1
    await request.session.aset("hits", hits)
    return JsonResponse({"user": user.get_username(), "hits": hits, **_where("me_async")})


def me_sync(request):
    """The same with the sync API: request.user and request.session, lazily loaded."""
    hits = request.session.get("hits", 0) + 1
    request.session["hits"] = hits
    return JsonResponse({"user": request.user.get_username(), "hits": hits, **_where("me_sync")})


def authors_sync(request):
    """A sync view that queries: served in a thread or on the loop."""
    return JsonResponse({"count": Author.objects.count(), **_where("authors_sync")})


@on_loop
def authors_on_loop(request):
    """Marked to be served on the loop whatever TANDEM_SYNC_VIEWS says."""
    return JsonResponse({"count": Author.objects.count(), **_where("authors_on_loop")})


@in_thread
def authors_in_thread(request):
    """Marked to be served in a thread whatever TANDEM_SYNC_VIEWS says."""
    return JsonResponse({"count": Author.objects.count(), **_where("authors_in_thread")})


def slow_sync(request):
    """Holds the loop (when served natively) with a blocking wait, then queries."""
    block(float(request.GET.get("seconds", "0.15")))
    return HttpResponse(f"slept; {Author.objects.count()} authors")


def template_view(request):
    """A TemplateResponse whose template runs a query while rendering."""
    template = engines["django"].from_string("{{ authors.count }} authors")
    return TemplateResponse(request, template, {"authors": Author.objects.all()})


async def lookup_error(request):
    raise LookupError("process_exception turns this into a 418")


async def value_error(request):
    raise ValueError("nobody handles this: a 500")


async def stream_async(request):
    async def parts():
        for i in range(3):
            yield f"part{i};"
            await asyncio.sleep(0)

    return StreamingHttpResponse(parts())


def stream_sync(request):
    return StreamingHttpResponse(f"part{i};" for i in range(3))


async def hang_in_query(request):
    """Sits in a long query until the client goes away."""
    from tandem import native
    from tests.db import long_query

    try:
        await native(long_query)()
    except asyncio.CancelledError:
        cancelled.append("hang_in_query")
        raise
    return HttpResponse("finished")


async def library_async(request):
    """An async view returning a TemplateResponse over a lazy queryset."""
    from tests.app.models import Book

    return TemplateResponse(request, "library.html", {"books": Book.objects.order_by("title")})


from django.views import View  # noqa: E402


@on_loop
class AuthorsOnLoopView(View):
    """A class-based view marked on its class."""

    def get(self, request):
        return JsonResponse({"count": Author.objects.count(), **_where("authors_cbv")})


# -- the cache (tests/test_cache.py) --------------------------------------------

from django.views.decorators.cache import cache_page  # noqa: E402

from tandem.shortcuts import arender  # noqa: E402

cached_view_runs: list[str] = []


@cache_page(60)
def cached_sync(request):
    """A sync view under cache_page: the cache middleware's I/O runs in the bridge."""
    cached_view_runs.append("sync")
    return JsonResponse({"authors": Author.objects.count(), **_where("cached_sync")})


@cache_page(60)
async def cached_async(request):
    cached_view_runs.append("async")
    return JsonResponse({"authors": await Author.objects.acount()})


async def fragment(request):
    """A template whose {% cache %} fragment reads and writes the cache while rendering."""
    return await arender(request, "fragment.html", {"authors": Author.objects.order_by("name")})
