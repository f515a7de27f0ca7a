#!/usr/bin/env python
"""Django's cache API on Redis, three ways: Django's RedisCache, tandem's, raw redis.asyncio.

Run from the repository root (needs Redis; TANDEM_REDIS_URL, default
redis://127.0.0.1:6379/9)::

    python bench/cache.py              # 5 rounds, ~20 s
    python bench/cache.py --rounds 9

Modes, each awaited on one asyncio loop:

* ``django``: ``await cache.aget(...)`` on ``django.core.cache.backends.redis.RedisCache``
  (each call is ``sync_to_async``: a hop to asgiref's thread and back);
* ``tandem``: the same calls on ``tandem.cache.backends.redis.RedisCache``;
* ``raw``: ``redis.asyncio`` by hand with the same key and the same pickled
  value: the floor any Django cache on redis.asyncio could reach.

Rows: ``aget`` and ``aset`` one at a time (µs per call), and ``aget x50``:
50 tasks each doing 20 ``aget`` concurrently (ms per batch). Every round
runs every mode, their order rotating; the table shows medians and the
ratios the issue asks about. Results go to bench/results/cache-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import statistics
import sys
import time
from pathlib import Path

# bench/http.py would shadow the standard library's http package that Django imports.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import django
from django.conf import settings

RESULTS = Path(__file__).resolve().parent / "results"
REDIS_URL = os.environ.get("TANDEM_REDIS_URL", "redis://127.0.0.1:6379/9")
MODES = ("django", "tandem", "raw")
VALUE = {"id": 7, "name": "Dashboard", "rows": list(range(20))}


def configure() -> None:
    location = {"LOCATION": REDIS_URL, "KEY_PREFIX": "bench"}
    settings.configure(
        INSTALLED_APPS=["tandem"],
        DATABASES={},
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "django": {"BACKEND": "django.core.cache.backends.redis.RedisCache", **location},
            "tandem": {"BACKEND": "tandem.cache.backends.redis.RedisCache", **location},
        },
    )
    django.setup()


def operations(raw, cache_key: str):
    """Per mode: (aget, aset) coroutine functions on the same key and value."""
    from django.core.cache import caches

    async def raw_get():
        value = await raw.get(cache_key)
        return pickle.loads(value)

    async def raw_set():
        await raw.set(cache_key, pickle.dumps(VALUE, pickle.HIGHEST_PROTOCOL), ex=300)

    ops = {"raw": (raw_get, raw_set)}
    for mode in ("django", "tandem"):
        cache = caches[mode]
        ops[mode] = (lambda c=cache: c.aget("k"), lambda c=cache: c.aset("k", VALUE, 300))
    return ops


async def per_call(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - start) / n * 1e6


async def concurrent(fn, tasks: int = 50, each: int = 20) -> float:
    async def worker():
        for _ in range(each):
            await fn()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return (time.perf_counter() - start) * 1e3


async def run(rounds: int, n: int) -> dict:
    from django.core.cache import caches
    from redis.asyncio import Redis

    raw = Redis.from_url(REDIS_URL)
    key = caches["tandem"].make_key("k")
    ops = operations(raw, key)
    samples = {row: {mode: [] for mode in MODES} for row in ("aget", "aset", "aget x50")}
    for mode in MODES:  # warm up: pools, imports, the thread
        await ops[mode][1]()
        await per_call(ops[mode][0], 200)
    for r in range(rounds):
        for mode in MODES[r % 3 :] + MODES[: r % 3]:
            get, put = ops[mode]
            samples["aset"][mode].append(await per_call(put, n))
            samples["aget"][mode].append(await per_call(get, n))
            samples["aget x50"][mode].append(await concurrent(get))
    await raw.aclose()
    await caches["tandem"].aclose()
    return {row: {mode: statistics.median(v) for mode, v in modes.items()} for row, modes in samples.items()}


def report(medians: dict, rounds: int) -> None:
    print(f"\nRedis cache, median of {rounds} rounds (µs per call; x50 rows: ms per batch)\n")
    print(f"{'operation':<10}{'django':>10}{'tandem':>10}{'raw':>10}{'django/tandem':>15}{'tandem/raw':>12}")
    for row, m in medians.items():
        print(
            f"{row:<10}{m['django']:>10.1f}{m['tandem']:>10.1f}{m['raw']:>10.1f}"
            f"{m['django'] / m['tandem']:>15.2f}{m['tandem'] / m['raw']:>12.2f}"
        )
    print("\ntargets (issue 10): django/tandem >= 3.00, tandem/raw <= 1.30")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000, help="sequential calls per sample")
    args = parser.parse_args(argv)
    configure()
    medians = asyncio.run(run(args.rounds, args.calls))
    report(medians, args.rounds)
    document = {
        "python": sys.version.split()[0],
        "django": django.get_version(),
        "rounds": args.rounds,
        "medians": medians,
        "ratios": {
            row: {"django_vs_tandem": m["django"] / m["tandem"], "tandem_vs_raw": m["tandem"] / m["raw"]}
            for row, m in medians.items()
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cache-latest.json").write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
