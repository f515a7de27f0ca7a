"""``on_commit`` callbacks in async tests: ``async with self.captureOnCommitCallbacks()``.

Django's ``TestCase.captureOnCommitCallbacks()`` is a plain context manager;
with ``execute=True`` its exit calls each captured callback, and an async
callback must be awaited. tandem's returns a ``CapturedOnCommit``, usable
with ``with`` as before and with ``async with`` in an async test.
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.test import TestCase

from tandem.bridge import call_native

__all__ = ["CapturedOnCommit", "capture_on_commit_callbacks"]

_stock_capture_on_commit_callbacks = TestCase.captureOnCommitCallbacks.__func__


class CapturedOnCommit:
    """Django's ``captureOnCommitCallbacks()``, usable with ``async with`` too.

    With ``execute=True`` Django calls each captured callback at the block's
    end. An async callback must be awaited: in sync code outside the loop
    tandem runs it with ``async_to_sync``; in an async test, ``async with``
    runs Django's own exit in the bridge, where it is awaited (a plain
    ``with`` there raises an error that says so).
    """

    def __init__(self, capture: Any) -> None:
        self._capture = capture  # Django's context manager, not entered yet

    def __enter__(self) -> list:
        return self._capture.__enter__()

    def __exit__(self, *exc_info: Any) -> Any:
        return self._capture.__exit__(*exc_info)

    async def __aenter__(self) -> list:
        return self._capture.__enter__()

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await call_native(self._capture.__exit__, *exc_info)


@classmethod  # type: ignore[misc]  # set on TestCase by tandem.patches
def capture_on_commit_callbacks(cls, *, using=DEFAULT_DB_ALIAS, execute=False):
    """``TestCase.captureOnCommitCallbacks``, also as ``async with``."""
    return CapturedOnCommit(_stock_capture_on_commit_callbacks(cls, using=using, execute=execute))
