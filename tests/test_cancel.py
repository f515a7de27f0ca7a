"""A task cancelled during a query cancels it on the server too."""

import asyncio

import pytest

from tandem import aatomic, native
from tandem.db.pool import loop_pools
from tests.app.models import Author
from tests.db import backend_pid, has_server, long_query, running_query

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "small"])


def _sleep_reporting_pid(pids, seconds):
    pids.append(backend_pid())
    long_query()


async def _wait_until_not_running(pid, within=1.0):
    if not has_server():  # SQLite: the query ran in our own process; it ended with the task
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if not running_query(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_cancelled_query_stops_on_the_server_and_the_pool_stays_usable():
    pids = []
    task = asyncio.create_task(native(_sleep_reporting_pid)(pids, 5))
    await asyncio.sleep(0.1)
    assert not has_server() or running_query(pids[0])
    loop = asyncio.get_running_loop()
    cancelled_at = loop.time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.time() - cancelled_at < 1.0  # the query was stopped, not waited out (5 s)
    assert await _wait_until_not_running(pids[0])
    assert await Author.objects.acount() == 0  # the next query from the pool works
    await asyncio.sleep(0)
    pool = loop_pools()["default"]
    assert pool.idle == pool.size  # the connection came back idle and clean


async def test_wait_for_timeout_inside_aatomic_rolls_back():
    pids = []

    async def buy():
        async with aatomic():
            await Author.objects.acreate(name="never committed")
            await native(_sleep_reporting_pid)(pids, 5)

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(buy(), 0.2)
    assert await _wait_until_not_running(pids[0])
    assert await Author.objects.acount() == 0  # rolled back


async def test_cancelled_while_waiting_for_a_pool_connection():
    release = asyncio.Event()

    holders = [asyncio.create_task(_hold_small(release)) for _ in range(2)]
    await asyncio.sleep(0.05)
    waiter = asyncio.create_task(native(_query_small)())
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await asyncio.gather(*holders)
    assert loop_pools()["small"].size <= 2
    assert await native(_query_small)() == 1


async def _hold_small(release):
    async with aatomic(using="small"):
        await native(_query_small)()
        await release.wait()


def _query_small():
    from django.db import connections

    with connections["small"].cursor() as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]
