"""A call abandoned by its cancelled task must not leave an unretrieved error behind.

Found by ``python -m chaos`` (scenario 1 on MariaDB, docs/reliability.md):
while connections were being killed, the loop's exception handler logged
"Future exception was never retrieved" (``OperationalError(2006, 'Server
has gone away')``) for calls of tasks cancelled just as their query failed.
"""

import asyncio
import gc
import threading
import time

import pytest

from tandem import native
from tandem.db.threaded import Worker


async def test_call_that_fails_as_its_task_is_cancelled_reports_nothing():
    loop = asyncio.get_running_loop()
    reported = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda loop, context: reported.append(context["message"]))
    worker = Worker()
    started, release = threading.Event(), threading.Event()

    def call():
        started.set()
        release.wait(5)
        raise ValueError("the call failed")

    try:
        task = asyncio.create_task(native(worker.run)(call))
        await asyncio.to_thread(started.wait, 5)
        release.set()
        while not worker._last.done():  # the call fails before the loop hears of it...
            time.sleep(0.001)
        task.cancel()  # ...and the task is cancelled meanwhile
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(3):
            await asyncio.sleep(0)
        gc.collect()
    finally:
        worker.stop()
        loop.set_exception_handler(previous)
    assert reported == []
