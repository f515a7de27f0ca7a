#!/usr/bin/env python
"""The ORM fast lane: two queries a view runs on every request, with and without it.

Run from the repository root::

    python bench/fastlane.py                 # PostgreSQL, SQLite and MariaDB/MySQL
    python bench/fastlane.py --db sqlite     # one database
    python bench/fastlane.py --quick         # smoke run

Two queries: ``get()`` of one row by primary key, and a 20-row ``values()``
page (``filter(author_id=...).order_by("pk").values(4 fields)[:20]``, iterated).
Five ways of running each, on aliases of the same
database (``bench/orm.py``'s setup: stock backend for ``sync`` and
``stock``, tandem's backend for the others):

* ``sync``: Django's sync API, stock backend, fast lane off: the
  baseline, sync Django as it is;
* ``sync + fast lane``: the same, with ``TANDEM_FAST_LANE = True``;
* ``stock async``: Django's ``aget()`` / ``async for`` on the stock backend
  (a thread hop);
* ``tandem async``: the same on tandem's backend, fast lane off;
* ``tandem async + fast lane``: the same, fast lane on.

Each round times every way (the order rotating from round to round), and
checks with ``tandem.db.fastlane.stats()`` that the fast lane served the
ways with it and only those; the table shows medians of the rounds in µs
per call and the ratio to ``sync``. JSON: ``bench/results/fastlane-latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0]).resolve() == BENCH_DIR:
    sys.path.pop(0)  # bench/http.py must not shadow the standard library's http
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.append(str(BENCH_DIR))  # last: orm, workload and benchapp, without shadowing http

import orm  # noqa: E402  (bench/orm.py: the databases, aliases and settings it sets up)

RESULTS = BENCH_DIR / "results"
WAYS = ("sync", "sync + fast lane", "stock async", "tandem async", "tandem async + fast lane")
QUERIES = ("get by pk", "values page")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="all", choices=("all", "postgresql", "sqlite", "mysql"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 200 calls")
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 2, 200
    return args


def fast_lane(on: bool) -> None:
    """Switch the fast lane for the process (as ``override_settings`` would)."""
    from django.conf import settings

    from tandem import conf
    from tandem.db import fastlane

    settings.TANDEM_FAST_LANE = on
    conf.forget("TANDEM_FAST_LANE")
    fastlane.forget()


def served() -> int:
    """Calls the fast lane served since it was last switched (``tandem.db.fastlane.stats()``)."""
    from tandem.db import fastlane

    return sum(lane.served for lane in fastlane.stats().values())


def _page(alias: str, author_pk: int):
    from benchapp.models import Book

    return (
        Book.objects.using(alias)
        .filter(author_id=author_pk)
        .order_by("pk")
        .values("id", "title", "pages", "published")[:20]
    )


def time_sync(query: str, alias: str, fixture, calls: int) -> float:
    from benchapp.models import Book

    if query == "get by pk":
        get, pk = Book.objects.using(alias).get, fixture.book_pk

        def once() -> None:
            get(pk=pk)
    else:

        def once() -> None:
            assert len(list(_page(alias, fixture.author_pk))) == 20

    for _ in range(calls // 10):
        once()
    started = time.perf_counter()
    for _ in range(calls):
        once()
    return (time.perf_counter() - started) / calls * 1e6


async def time_async(query: str, alias: str, fixture, calls: int) -> float:
    from benchapp.models import Book

    if query == "get by pk":
        aget, pk = Book.objects.using(alias).aget, fixture.book_pk

        async def once() -> None:
            await aget(pk=pk)
    else:

        async def once() -> None:
            assert len([row async for row in _page(alias, fixture.author_pk)]) == 20

    for _ in range(calls // 10):
        await once()
    started = time.perf_counter()
    for _ in range(calls):
        await once()
    return (time.perf_counter() - started) / calls * 1e6


async def one_round(query: str, ways: tuple[str, ...], fixture, calls: int) -> dict[str, float]:
    from concurrent.futures import ThreadPoolExecutor

    timings = {}
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(1) as thread:  # sync Django runs in a thread with no loop, as under WSGI
        for way in ways:
            fast_lane("fast lane" in way)
            if way.startswith("sync"):
                alias = orm.ALIASES["sync"]
                timings[way] = await loop.run_in_executor(thread, time_sync, query, alias, fixture, calls)
            elif way == "stock async":
                timings[way] = await time_async(query, orm.ALIASES["stock"], fixture, calls)
            else:
                timings[way] = await time_async(query, orm.ALIASES["tandem"], fixture, calls)
            assert ("fast lane" in way) == (served() > 0), f"{way}: the fast lane served {served()} calls"
    return timings


def run_one(db: str, args: argparse.Namespace) -> dict:
    # A database of its own: bench/orm.py recreates its tables on each run.
    urls = argparse.Namespace(url=_renamed(orm.DEFAULT_URL), mysql_url=_renamed(orm.DEFAULT_MYSQL_URL))
    server = orm.ensure_database(db, urls)
    orm.configure_django(orm.database_settings(db, server))
    from workload import prepare

    if db == "sqlite":
        orm.sqlite_wal()
    fixture = prepare(orm.ALIASES["sync"])
    results = {}
    for query in QUERIES:
        rounds: dict[str, list[float]] = {way: [] for way in WAYS}
        for index in range(args.rounds):
            order = WAYS[index % len(WAYS) :] + WAYS[: index % len(WAYS)]
            for way, value in asyncio.run(one_round(query, order, fixture, args.calls)).items():
                rounds[way].append(value)
        medians = {way: statistics.median(values) for way, values in rounds.items()}
        results[query] = {"medians_us": medians, "rounds_us": rounds}
    if db == "sqlite":
        shutil.rmtree(Path(server["NAME"]).parent, ignore_errors=True)
    return {"database": db, "queries": results}


def _renamed(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/tandem_bench_fastlane"))


def main() -> int:
    args = parse_args()
    if args.db != "all":
        result = run_one(args.db, args)
        if args.result_file:
            args.result_file.write_text(json.dumps(result))
        else:
            report([result], args)
        return 0
    results = []
    for db in ("postgresql", "sqlite", "mysql"):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
            out = Path(handle.name)
        command = [
            sys.executable,
            __file__,
            "--db",
            db,
            "--rounds",
            str(args.rounds),
            "--calls",
            str(args.calls),
        ]
        command += ["--result-file", str(out)] + (["--quick"] if args.quick else [])
        subprocess.run(command, check=True, env={**os.environ})
        results.append(json.loads(out.read_text()))
        out.unlink()
    report(results, args)
    return 0


def report(results: list[dict], args: argparse.Namespace) -> None:
    for query in QUERIES:
        rounds = f"median of {args.rounds} rounds of {args.calls} calls"
        print(f"\n{query}: µs per call ({rounds}), ratio to sync\n")
        print(f"| {'database':<10} | " + " | ".join(f"{w:>24}" for w in WAYS) + " |")
        print(f"| {'-' * 10} | " + " | ".join("-" * 23 + ":" for _ in WAYS) + " |")
        for result in results:
            medians = result["queries"][query]["medians_us"]
            base = medians["sync"]
            cells = [f"{medians[w]:8.1f} ({medians[w] / base:4.2f}x)" for w in WAYS]
            print(f"| {result['database']:<10} | " + " | ".join(f"{c:>24}" for c in cells) + " |")
    if not args.quick:
        document = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "python": sys.version.split()[0],
            "rounds": args.rounds,
            "calls": args.calls,
            "results": results,
        }
        path = RESULTS / "fastlane-latest.json"
        path.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nresults: {path.relative_to(BENCH_DIR.parent)}")


if __name__ == "__main__":
    sys.exit(main())
