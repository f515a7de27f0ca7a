"""The blocking detector names sync code that keeps the loop too long."""

import gc
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tandem import native
from tests.test_request_path import serve
from tests.watchdog import block

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "tandem.blocking"]


async def test_a_sync_view_that_blocks_is_named_with_its_stack(caplog):
    caplog.set_level(logging.WARNING, logger="tandem.blocking")
    async with serve(TANDEM_SYNC_VIEWS="native") as client:
        response = await client.get("/sync/slow/?seconds=0.15")
    assert response.status_code == 200
    (message,) = warnings_of(caplog)
    assert message.startswith("tests.app.views.slow_sync held the event loop for 1")
    assert "TANDEM_BLOCKING_WARNING_MS = 100" in message
    # The stack where it gave the loop back: the query after the sleep.
    assert 'views.py", line' in message and "Author.objects.count()" in message


async def test_short_stretches_and_async_waits_are_not_reported(caplog):
    caplog.set_level(logging.WARNING, logger="tandem.blocking")

    def quick_queries():
        from tests.app.models import Author

        for _ in range(20):
            Author.objects.count()

    await native(quick_queries)()
    async with serve(TANDEM_SYNC_VIEWS="native") as client:
        await client.get("/sync/authors/")
    assert warnings_of(caplog) == []


@override_settings(TANDEM_BLOCKING_WARNING_MS=None)
async def test_none_turns_it_off(caplog):
    caplog.set_level(logging.WARNING, logger="tandem.blocking")
    await native(block)(0.12)
    assert warnings_of(caplog) == []


@override_settings(TANDEM_BLOCKING_WARNING_MS=20)
async def test_the_threshold_is_a_setting(caplog):
    caplog.set_level(logging.WARNING, logger="tandem.blocking")
    await native(block)(0.03)
    (message,) = warnings_of(caplog)
    assert message.startswith("tests.watchdog.block held the event loop for ")
    assert "(it returned)" in message


@pytest.mark.parametrize("value", [0, -5, "100", True])
def test_a_bad_threshold_names_the_setting(value):
    from tandem import conf

    with override_settings(TANDEM_BLOCKING_WARNING_MS=value):
        with pytest.raises(ImproperlyConfigured, match="TANDEM_BLOCKING_WARNING_MS"):
            conf.blocking_warning_seconds()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_warning_shows_on_stderr_under_uvicorn():
    """Django's default logging configuration, uvicorn's own: the warning reaches stderr."""
    port = _free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.blocking_site", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.blocking_site:application", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/hog/", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        assert response.text == "done"
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)
    assert "tests.blocking_site.hog held the event loop for 2" in stderr, stderr


@override_settings(TANDEM_BLOCKING_WARNING_MS=5)
async def test_a_garbage_collection_is_not_blamed_on_the_code_it_interrupted(caplog):
    # A full collection stops every thread wherever it is triggered; under
    # load one can take 100 ms. The code that happened to run is innocent.
    caplog.set_level(logging.WARNING, logger="tandem.blocking")
    garbage = [[i] for i in range(300_000)]  # a collection must walk all of them

    def collect():
        started = time.perf_counter()
        gc.collect()
        return time.perf_counter() - started

    took = await native(collect)()
    assert took > 0.005, "the collection was too quick to tell"
    assert warnings_of(caplog) == []

    await native(block)(0.02)  # the same stretch, spent by the code itself, is reported
    assert len(warnings_of(caplog)) == 1
    del garbage


async def test_time_sleep_in_the_bridge_waits_on_the_loop(caplog):
    caplog.set_level(logging.WARNING, logger="tandem.blocking")
    await native(time.sleep)(0.12)
    assert warnings_of(caplog) == []


@override_settings(TANDEM_COOPERATIVE_IO=False)
async def test_without_cooperative_io_a_sleep_is_named_again(caplog):
    caplog.set_level(logging.WARNING, logger="tandem.blocking")
    await native(time.sleep)(0.12)
    (message,) = warnings_of(caplog)
    assert message.startswith("time.sleep held the event loop for ")
