"""Micro-benchmark of the bridge itself: what one unit of work costs.

Answers the design question "a new greenlet per native() call, or reuse?":
prints medians (µs per call, several rounds) for creating a greenlet and
running it to the end, switching into an existing one and back, a whole
``await native(noop)()``, one ``await_`` round trip inside it, and asgiref's
``sync_to_async`` for comparison; and what the blocking detector adds per
switch into a bridge. Writes bench/results/bridge-latest.json.

    python bench/bridge.py [--rounds 7] [--iterations 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import greenlet
from asgiref.sync import sync_to_async

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tandem.bridge import await_, native, set_blocking_watch
from tandem.bridge.blocking import clock as blocking_clock


def noop():
    return None


def per_call(fn, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - start) / iterations * 1e6


def greenlet_create(iterations: int) -> float:
    return per_call(lambda: greenlet.greenlet(noop).switch(), iterations)


def greenlet_switch(iterations: int) -> float:
    main = greenlet.getcurrent()

    def bounce():
        while True:
            main.switch()

    worker = greenlet.greenlet(bounce)
    result = per_call(worker.switch, iterations)
    worker.throw(greenlet.GreenletExit)
    return result


async def async_per_call(make, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        await make()
    return (time.perf_counter() - start) / iterations * 1e6


class Ready:
    """An awaitable that completes at once: isolates the switch cost."""

    def __await__(self):
        return None
        yield


def one_await():
    await_(Ready())


def watched(case):
    """Run ``case`` with the blocking detector on (a threshold no call reaches)."""

    def run():
        set_blocking_watch(10.0, lambda fn, seconds, bridge: None, blocking_clock)
        try:
            return case()
        finally:
            set_blocking_watch(None)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=20000)
    args = parser.parse_args()
    n = args.iterations
    bridged_noop, bridged_await = native(noop), native(one_await)
    threaded_noop = sync_to_async(noop)
    cases = {
        "greenlet: create + run to end": lambda: greenlet_create(n),
        "greenlet: switch in and out (reuse)": lambda: greenlet_switch(n),
        "await native(noop)()": lambda: asyncio.run(async_per_call(bridged_noop, n)),
        "await native(fn)() with one await_": lambda: asyncio.run(async_per_call(bridged_await, n)),
        "await native(fn)() with one await_, blocking detector on": watched(
            lambda: asyncio.run(async_per_call(bridged_await, n))
        ),
        "await sync_to_async(noop)()": lambda: asyncio.run(async_per_call(threaded_noop, n // 10)),
    }
    rounds = {name: [case() for _ in range(args.rounds)] for name, case in cases.items()}
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    width = max(map(len, medians))
    print(f"{'operation':<{width}}  µs/call (median of {args.rounds})")
    for name, value in medians.items():
        print(f"{name:<{width}}  {value:8.2f}")
    # That unit switches into its bridge twice (start, after the await_).
    per_switch = (
        medians["await native(fn)() with one await_, blocking detector on"]
        - medians["await native(fn)() with one await_"]
    ) / 2
    medians["blocking detector: cost per switch"] = per_switch
    print(f"{'blocking detector: cost per switch':<{width}}  {per_switch:8.2f}")
    out = Path(__file__).parent / "results" / "bridge-latest.json"
    out.parent.mkdir(exist_ok=True)
    info = {"python": platform.python_version(), "greenlet": greenlet.__version__}
    out.write_text(json.dumps({"machine": info, "medians_us": medians, "rounds_us": rounds}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
