"""Bridged mode: every test runs on an event loop, inside ``tandem.native``.

A test's ``setUp``, test method, ``tearDown`` and cleanups run as one task
on a loop that lives as long as the test run: the sync ORM calls of Django's
own tests do their I/O through the bridge, exactly as a sync helper called
with ``await native(helper)()`` does in a project. Async test methods, which
Django wraps in ``async_to_sync``, are then awaited by that same task (tandem
makes ``async_to_sync`` await on the running loop inside the bridge), so their
``a*`` calls run on tandem's native path.

What stays outside the loop is what Django's runner does around a test:
creating test databases, ``setUpClass``/``setUpTestData`` and the
``TestCase`` transaction (which tandem shares with the test's task, see
``tandem.testing``), fixture loading and flushing.
"""

from __future__ import annotations

import asyncio
import unittest

from django.test import SimpleTestCase

from tandem import native

_loop: asyncio.AbstractEventLoop | None = None
_stock_run = unittest.TestCase.run


def loop() -> asyncio.AbstractEventLoop:
    """The run's event loop, created on first use."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    return _loop


def _bridged_run(self, result=None):
    if asyncio._get_running_loop() is not None:
        # A test that runs a test suite of its own (Django's test_utils does):
        # the inner tests run in the outer test's task, inside its bridge
        # already. Starting the loop again from inside it would raise "This
        # event loop is already running", an artefact of this runner.
        return _stock_run(self, result)
    return loop().run_until_complete(native(_stock_run)(self, result))


def install() -> None:
    """Run every Django test case (setUp, test, tearDown) through the bridge."""
    SimpleTestCase.run = _bridged_run


def close() -> None:
    """Close the loop, and with it tandem's pools (their connections)."""
    global _loop
    if _loop is not None and not _loop.is_closed():
        _loop.run_until_complete(_loop.shutdown_asyncgens())
        _loop.close()
    _loop = None
