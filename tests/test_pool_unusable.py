"""A connection Django closes as unusable must leave the pool, not stay counted in it.

Found by ``python -m chaos`` (scenario 1, connections killed under load,
docs/reliability.md): now and then, after the kills stopped, the pool kept
counting a connection that nobody held and that was closed: one connection
of capacity lost for good per occurrence.

Django's ``request_finished`` handler (``close_old_connections``) closes a
connection on which errors occurred and that is no longer usable. When a
request's last query failed on a killed connection and nothing suspended
the task before ``response.close()``, the task still holds that connection
then; tandem's ``close()`` (``_discarding``) closes the driver connection
with Django's ``close()`` but never tells the pool, which keeps counting it.
"""

import asyncio

import pytest
from django.db import OperationalError, close_old_connections

from tandem import native
from tandem.db.pool import loop_pools
from tests.db import alive, backend_pid, has_server, terminate

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "small"]),
    pytest.mark.skipif(not has_server(), reason="needs a database server that can kill a connection"),
]


def _fail_then_close_old_connections(alias: str) -> None:
    with pytest.raises(OperationalError):
        backend_pid(alias)  # the connection was killed: the query fails
    close_old_connections()  # what Django's request_finished runs next


async def _kill_a_pooled_connection(alias: str) -> None:
    pid = await native(backend_pid)(alias)
    await asyncio.sleep(0)  # back to the pool
    await asyncio.to_thread(terminate, pid)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2
    while await asyncio.to_thread(alive, [pid]) and loop.time() < deadline:
        await asyncio.sleep(0.02)


async def test_connection_closed_as_unusable_is_discarded_from_the_pool():
    pool_size = 2  # the "small" alias
    for _ in range(pool_size):
        await _kill_a_pooled_connection("small")
        await native(_fail_then_close_old_connections)("small")
        await asyncio.sleep(0)
    pool = loop_pools()["small"]
    assert pool.size == pool.idle, f"{pool.size - pool.idle} connections counted as in use, held by nobody"
    assert await native(backend_pid)("small")  # without the fix: PoolTimeout, the pool is "full"
