"""The greenlet bridge: native(), await_(), in_bridge()."""

import asyncio
import contextvars
import gc
import os
import subprocess
import sys
import threading
import traceback
import warnings
import weakref

import greenlet
import pytest

from tandem import OutsideBridgeError, await_, in_bridge, native

request_id = contextvars.ContextVar("request_id", default=None)


async def test_native_runs_sync_code_on_the_loop_thread():
    loop_thread = threading.get_ident()

    def where():
        return threading.get_ident(), in_bridge()

    assert await native(where)() == (loop_thread, True)
    assert not in_bridge()


async def test_native_passes_arguments_and_works_as_decorator():
    @native
    def add(a, b, *, c=0):
        """Add numbers."""
        return a + b + c

    assert await add(1, 2, c=3) == 6
    assert add.__name__ == "add" and add.__doc__ == "Add numbers."


async def test_await_returns_the_awaited_value():
    async def later(value):
        await asyncio.sleep(0.01)
        return value

    def sync_code():
        return await_(later(1)) + await_(later(2))

    assert await native(sync_code)() == 3


async def test_await_outside_the_bridge_raises_and_closes_the_coroutine():
    async def never():
        return 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine was never awaited" would fail here
        with pytest.raises(OutsideBridgeError, match=r"native\(\)"):
            await_(never())
        gc.collect()


def test_await_outside_any_loop_raises_too():
    with pytest.raises(OutsideBridgeError):
        await_(asyncio.sleep(0))


# Run in a process of its own: the suite's other threads (coverage gives each a
# greenlet state) come and go while the check counts.
_THREAD_CHECK = """
import asyncio, gc, threading
import greenlet
from tandem import OutsideBridgeError, await_, in_bridge, native

def main_greenlets():
    # Threads with a greenlet state: each has one main greenlet (no parent).
    return sum(1 for o in gc.get_objects() if type(o) is greenlet.greenlet and o.parent is None)

def made_in_a_thread_by(fn):
    ran, leave = threading.Event(), threading.Event()
    def thread():
        fn()
        ran.set()
        leave.wait()
    before = main_greenlets()
    worker = threading.Thread(target=thread)
    worker.start()
    ran.wait()
    made = main_greenlets() - before
    leave.set()
    worker.join()
    return made

def ask():
    assert not in_bridge()
    try:
        await_(asyncio.sleep(0))
    except OutsideBridgeError:
        pass

async def on_the_loop():
    return await native(in_bridge)()

print(made_in_a_thread_by(ask), asyncio.run(on_the_loop()), made_in_a_thread_by(greenlet.getcurrent))
"""


def test_threads_that_ask_whether_they_are_in_the_bridge_get_no_greenlet_state():
    # A request's executor thread or a connection's worker asks on every
    # statement. Given a greenlet state, each such thread costs, when it ends, a
    # scan of every object of the process on the main thread (greenlet's
    # optional cleanup): a thousand threads ending stalled a loop for minutes.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_CORE")}
    out = subprocess.run(
        [sys.executable, "-c", _THREAD_CHECK], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    # in_bridge() and await_() give a thread none; the loop thread is still
    # told the truth; what getcurrent() gives a thread, the check sees.
    assert out.stdout.split() == ["0", "True", "1"]


async def test_sync_code_sees_and_sets_the_task_contextvars():
    request_id.set("r-1")

    def sync_code():
        seen = request_id.get()
        request_id.set("r-2")
        return seen

    assert await native(sync_code)() == "r-1"
    assert request_id.get() == "r-2"


async def test_tasks_keep_their_own_context_while_interleaving():
    async def one(name):
        request_id.set(name)

        def sync_code():
            await_(asyncio.sleep(0.01))
            return request_id.get()

        return await native(sync_code)()

    assert await asyncio.gather(*(one(f"t{i}") for i in range(10))) == [f"t{i}" for i in range(10)]


async def test_exceptions_reach_the_caller_with_their_traceback():
    def innermost():
        raise KeyError("lost")

    def sync_code():
        await_(asyncio.sleep(0))
        innermost()

    with pytest.raises(KeyError) as info:
        await native(sync_code)()
    names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert names[-2:] == ["sync_code", "innermost"]


async def test_async_exceptions_are_raised_at_the_await_point_in_sync_code():
    async def failing():
        raise ValueError("from async")

    def sync_code():
        try:
            await_(failing())
        except ValueError as exc:
            return f"caught {exc}"

    assert await native(sync_code)() == "caught from async"


async def test_cancellation_is_raised_inside_sync_code_which_can_still_await():
    events = []

    def sync_code():
        try:
            await_(asyncio.sleep(10))
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            await_(asyncio.sleep(0.01))  # cleanup I/O, e.g. a rollback
            events.append("cleaned up")

    task = asyncio.create_task(native(sync_code)())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["cancelled", "cleaned up"]


async def test_nesting_sync_native_async_native_sync():
    def inner_sync(x):
        return (x, in_bridge())

    async def middle_async(x):
        return await native(inner_sync)(x + 1)

    def outer_sync(x):
        return await_(middle_async(x + 1))

    assert await native(outer_sync)(1) == (3, True)


def test_native_rejects_coroutine_functions():
    async def coro():
        pass

    with pytest.raises(TypeError, match="synchronous"):
        native(coro)


async def test_parallel_native_calls_interleave():
    def sleeper():
        await_(asyncio.sleep(0.2))

    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(*(native(sleeper)() for _ in range(20)))
    assert loop.time() - start < 1.0  # 20 x 0.2 s in sequence would be 4 s


async def test_reused_bridges_keep_no_result_or_exception_alive():
    class PayloadError(Exception):
        pass

    def make():
        return PayloadError()

    def fail():
        raise PayloadError

    result = weakref.ref(await native(make)())
    assert result() is None
    try:
        await native(fail)()
    except PayloadError as exc:
        error = weakref.ref(exc)
    assert error() is None


async def test_bridge_greenlets_are_reused_between_units():
    def which():
        return id(greenlet.getcurrent())

    first = await native(which)()
    assert await native(which)() == first


async def test_async_to_sync_inside_native_awaits_on_the_running_loop():
    from asgiref.sync import async_to_sync

    marker = contextvars.ContextVar("marker")
    marker.set("task's")
    loop = asyncio.get_running_loop()

    async def double(x):
        assert asyncio.get_running_loop() is loop  # no second loop, no other thread
        return 2 * x, marker.get()

    def sync_code():
        return async_to_sync(double)(21)

    assert await native(sync_code)() == (42, "task's")
