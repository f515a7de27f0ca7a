"""Task-owned connections: each task its own, held only while a query runs."""

import asyncio
import logging

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from tandem import native
from tandem.db.pool import loop_pools
from tests.app.models import Author
from tests.db import backend_pid

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "small"])


async def test_parallel_queries_run_concurrently_on_separate_connections():
    loop = asyncio.get_running_loop()
    start = loop.time()
    pids = await asyncio.gather(*(native(backend_pid)("default", 0.2) for _ in range(10)))
    elapsed = loop.time() - start
    assert len(set(pids)) == 10
    assert elapsed < 1.0  # one after another: 2 s


async def test_create_task_and_taskgroup_also_run_in_parallel():
    tasks = [asyncio.create_task(native(backend_pid)("default", 0.1)) for _ in range(3)]
    assert len(set(await asyncio.gather(*tasks))) == 3


async def test_the_connection_goes_back_to_the_pool_when_the_task_waits_on_anything_else():
    await Author.objects.acreate(name="a")
    pool = loop_pools()["default"]
    assert connection.connection is not None  # straight on to the next ORM call: kept
    await asyncio.sleep(0)  # a request waiting on something else holds nothing:
    assert connection.connection is None
    assert pool.idle == pool.size == 1  # it waits in the pool
    assert (await Author.objects.aget(name="a")).name == "a"
    assert pool.size == 1  # and the next operation reuses it


async def test_a_waiting_task_gets_the_connection_at_the_end_of_the_holders_operation():
    release = asyncio.Event()

    async def hog(i):
        await native(backend_pid)("small")
        await release.wait()

    hogs = [asyncio.create_task(hog(i)) for i in range(2)]
    await asyncio.sleep(0.05)
    assert loop_pools()["small"].idle == 2  # waiting on an event, they hold none
    assert await native(backend_pid)("small")  # so a third task gets one at once
    release.set()
    await asyncio.gather(*hogs)


async def test_each_task_has_its_own_wrapper_even_if_its_parent_touched_one():
    parent = connections["default"]

    async def child():
        return connections["default"]

    children = await asyncio.gather(child(), child())
    assert parent not in children and children[0] is not children[1]


def test_sync_code_keeps_djangos_thread_wrapper():
    assert connections["default"] is connections["default"]
    assert connections["default"].task_owned is False


async def test_queries_are_logged_under_debug(settings, caplog):
    settings.DEBUG = True
    with caplog.at_level(logging.DEBUG, logger="django.db.backends"):
        await Author.objects.filter(name="logged").acount()
    assert any("logged" in q["sql"] for q in connection.queries)
    assert any("logged" in record.getMessage() for record in caplog.records)


async def test_capture_queries_context_in_async_code():
    with CaptureQueriesContext(connection) as captured:
        await Author.objects.acreate(name="x")
        await Author.objects.acount()
    assert len(captured) == 2
    assert "INSERT" in captured[0]["sql"]


async def test_close_gives_the_connection_back_and_an_unusable_one_is_discarded():
    def close_then_pid():
        pid = backend_pid()
        connection.close()  # what close_old_connections does at the end of a request
        return pid, backend_pid()

    first, again = await native(close_then_pid)()
    assert again == first  # given back to the pool, taken again

    def discard_then_pid():
        pid = backend_pid()
        connection.errors_occurred = True
        connection.is_usable = lambda: False  # Django's check says: unusable
        try:
            connection.close_if_unusable_or_obsolete()
        finally:
            del connection.is_usable
        return pid, backend_pid()

    first, after = await native(discard_then_pid)()
    assert after != first  # discarded, not pooled


async def test_a_tasks_wrapper_lent_to_a_thread_connects_there():
    import threading

    wrapper = await native(lambda: connections["default"])()
    results = []

    def in_thread():
        connections["default"] = wrapper  # as Django's own test of thread sharing does
        results.append(backend_pid())

    wrapper.inc_thread_sharing()
    try:
        await native(wrapper.close)()
        thread = threading.Thread(target=in_thread)
        thread.start()
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
    finally:
        await native(wrapper.close)()
        wrapper.dec_thread_sharing()
    assert results and results[0]
