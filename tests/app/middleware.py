"""Middleware that records where each of its hooks ran (thread, bridge)."""

import threading

from django.http import HttpResponse
from django.utils.deprecation import MiddlewareMixin

from tandem import in_bridge
from tandem.handlers import in_thread

# hook name -> list of (thread ident, in bridge)
seen: dict[str, list[tuple[int, bool]]] = {}


def _note(hook: str) -> None:
    seen.setdefault(hook, []).append((threading.get_ident(), in_bridge()))


class RecordingMiddleware(MiddlewareMixin):
    """Every hook Django knows, each noting where it ran."""

    def process_request(self, request):
        _note("process_request")

    def process_view(self, request, view, args, kwargs):
        _note("process_view")

    def process_template_response(self, request, response):
        _note("process_template_response")
        return response

    def process_exception(self, request, exception):
        _note("process_exception")
        if isinstance(exception, LookupError):
            return HttpResponse("handled by middleware", status=418)
        return None

    def process_response(self, request, response):
        _note("process_response")
        return response


def sync_only_middleware(get_response):
    """A function middleware: sync only, Django adapts the chain around it."""

    def middleware(request):
        _note("sync_only")
        return get_response(request)

    return middleware


@in_thread
class ThreadedMiddleware(MiddlewareMixin):
    """Marked to keep its hooks in a thread."""

    def process_request(self, request):
        _note("threaded")


class ListedMiddleware(MiddlewareMixin):
    """Kept in a thread by TANDEM_THREAD_MIDDLEWARE in the test that lists it."""

    def process_request(self, request):
        _note("listed")
