"""How long the event loop went without a turn while some work ran."""

import asyncio
import gc
from collections.abc import Awaitable


async def longest_stall(work: Awaitable, tick: float = 0.005) -> float:
    """Run ``work``; return the longest gap (seconds) between two turns of a ticker.

    A full garbage collection of a long test process's heap can itself pause
    the loop for tens of ms; collections are off meanwhile, as that is not
    what the tests measure.
    """
    gaps = [0.0]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def ticker():
        last = loop.time()
        while not stop.is_set():
            await asyncio.sleep(tick)
            now = loop.time()
            gaps.append(now - last - tick)
            last = now

    gc.collect()
    gc.disable()
    try:
        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(tick * 2)
        try:
            await work
        finally:
            stop.set()
            await ticking
    finally:
        gc.enable()
    return max(gaps)
