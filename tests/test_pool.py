"""The per-loop pool: limits, health checks, closing with the loop, options."""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from tandem import native
from tandem.db.pool import PoolOptions, PoolTimeout, loop_pools
from tests.db import alive, backend_pid, has_server, terminate

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "small", "checked"])
ROOT = Path(__file__).resolve().parent.parent


async def test_exhausted_pool_waits_without_blocking_then_names_alias_and_size():
    release = asyncio.Event()

    def hold():
        from django.db import connections, transaction

        with transaction.atomic(using="small"):
            connections["small"].cursor().execute("SELECT 1")
            from tandem import await_

            await_(release.wait())

    holders = [asyncio.create_task(native(hold)()) for _ in range(2)]
    await asyncio.sleep(0.1)
    ticks = 0

    async def ticker():  # the loop keeps running while we wait for a connection
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    with pytest.raises(PoolTimeout, match=r"'small'.*all 2 connections"):
        await native(backend_pid)("small")
    ticking.cancel()
    assert ticks > 10
    release.set()
    await asyncio.gather(*holders)
    assert await native(backend_pid)("small")  # free again


async def test_a_waiter_gets_the_connection_released_by_another_task():
    results = await asyncio.gather(*(native(backend_pid)("small", 0.05) for _ in range(6)))
    assert len(set(results)) <= 2
    assert loop_pools()["small"].size <= 2


@pytest.mark.skipif(not has_server(), reason="needs a database server that can kill a connection")
async def test_health_checks_replace_a_connection_killed_while_idle():
    pid = await native(backend_pid)("checked")
    await asyncio.sleep(0)  # back to the pool
    terminate(pid)
    await asyncio.sleep(0.1)
    new_pid = await native(backend_pid)("checked")  # no error: the pool pinged first
    assert new_pid != pid


async def test_a_task_cancelled_during_the_health_check_loses_no_connection():
    # With CONN_HEALTH_CHECKS the pool pings an idle connection before handing
    # it out: that is I/O, so a task can be cancelled in the middle of it.
    # Cancel a fresh task after each of its first steps in turn; one of them
    # lands in the ping. Every connection must still be accounted for: idle in
    # the pool, or closed.
    await native(backend_pid)("checked")
    await asyncio.sleep(0)
    pool = loop_pools()["checked"]
    for steps in range(40):
        task = asyncio.create_task(native(backend_pid)("checked"))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
        assert pool.idle == pool.size, f"cancelled after {steps} steps: a connection is lost"
    assert await native(backend_pid)("checked")


def test_pools_close_when_the_loop_ends():
    async def main():
        pids = await asyncio.gather(*(native(backend_pid)("default", 0.05) for _ in range(5)))
        assert loop_pools()["default"].size == 5
        return set(pids)

    pids = asyncio.run(main())
    assert len(pids) == 5
    # The server ends a session shortly after its socket closes, not at once.
    deadline = time.monotonic() + 2
    while has_server() and alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not has_server() or alive(pids) == set()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yes", "must be True or a dict"),
        ({"max_sise": 3}, "unknown option 'max_sise'"),
        ({"timeout": -1}, r"\['timeout'\] must be a number >= 0"),
        ({"max_size": 0}, r"\['max_size'\] must be an integer >= 1"),
        ({"min_size": 5, "max_size": 2}, r"\['min_size'\] must be an integer <= max_size"),
    ],
)
def test_invalid_pool_options_are_rejected_by_name(value, message):
    with pytest.raises(ImproperlyConfigured, match=r"DATABASES\['x'\]\['OPTIONS'\]\['pool'\]"):
        PoolOptions.from_settings("x", value)
    with pytest.raises(ImproperlyConfigured, match=message):
        PoolOptions.from_settings("x", value)


def test_pool_option_defaults():
    assert PoolOptions.from_settings("x", True) == PoolOptions()
    assert PoolOptions.from_settings("x", {"max_size": 3}).max_size == 3


LOOP_END_SCRIPT = """
import asyncio, django
django.setup()
from tandem import native
from tests.db import backend_pid

async def main():
    return await asyncio.gather(*(native(backend_pid)("default", 0.01) for _ in range(3)))

print(len(set(asyncio.run(main()))))
"""


def test_loop_end_closes_pools_without_any_warning():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", LOOP_END_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "3"
    assert run.stderr == ""  # dev mode shows ResourceWarnings and unclosed-loop warnings
