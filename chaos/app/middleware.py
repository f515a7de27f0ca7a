"""Database errors as a 503 that names them; any other exception as a 500 that does."""

from __future__ import annotations

from asgiref.sync import markcoroutinefunction
from django.db import Error as DatabaseError
from django.http import JsonResponse


def describe(exc: BaseException) -> dict:
    """The exception's class (dotted) and the first line of its message."""
    cls = type(exc)
    message = str(exc).strip().splitlines()
    return {"error": f"{cls.__module__}.{cls.__qualname__}", "message": message[0] if message else ""}


def database_error(exc: BaseException) -> BaseException | None:
    """``exc`` if it is a database error; for a group of only those (a TaskGroup's), the first."""
    if isinstance(exc, DatabaseError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        matched, rest = exc.split(DatabaseError)
        if matched is not None and rest is None:
            while isinstance(matched, BaseExceptionGroup):
                matched = matched.exceptions[0]
            return matched
    return None


class DatabaseErrorsAs503:
    """What a careful project does: a database failure is a 503, not a crash page."""

    async_capable = True
    sync_capable = False

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        return await self.get_response(request)

    async def process_exception(self, request, exception):
        error = database_error(exception)
        if error is not None:
            return JsonResponse(describe(error), status=503)
        return JsonResponse(describe(exception), status=500)
