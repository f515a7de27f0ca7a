#!/usr/bin/env python
"""What tandem's SQLite backend costs per query: sync Django vs ``await ...a*()``.

Run from the repository root::

    python bench/sqlite_hop.py               # 7 rounds x 300 calls, about a minute
    python bench/sqlite_hop.py --quick       # smoke run
    python bench/sqlite_hop.py --loop-budget-ms 0   # every statement hops

SQLite calls block, so inside the bridge a call that may block (a commit, a
lock wait, a long statement) runs on the connection's worker thread: one
*thread hop* (hand the call over, wake the thread, wake the loop when it is
done); short statements run on the loop under a time budget
(``OPTIONS["loop_budget_ms"]``, docs/howto/sqlite.md). This script measures
what tandem costs on top of Django's own work, on one file database in a
temporary directory:

* ``sync``: Django's stock SQLite backend, plain sync ORM calls, no loop;
* ``stock async``: Django's async API (``aget``, ...) on the stock backend:
  ``sync_to_async``, one hop to Django's thread per call;
* ``tandem``: the same async API on a ``tandem.db.backends.sqlite3`` alias,
  awaited one after the other.

Rows: ``get``, ``count``, a 20-row list, an autocommit ``create``, and three
creates in one transaction (``atomic`` / ``aatomic``), plus the bare hop
(``Worker.run(noop)`` inside a unit of work vs calling ``noop()``). Also
counted: hops per operation. The report is the median of the rounds (the
order of the modes rotates); the JSON in ``bench/results/`` keeps every round
(``sqlite-hop-py<X.Y>-django<version>-<time>.json``, and a full run also
``sqlite-hop-latest.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results" / "sqlite-hop-latest.json"
SYNC, STOCK, TANDEM = "sync", "stock", "tandem"
MODES = (SYNC, STOCK, TANDEM)
BOOKS = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds, median reported (default 7)")
    parser.add_argument("--iterations", type=int, default=300, help="calls per read operation per round")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 30 calls")
    parser.add_argument("--no-save", action="store_true", help="do not write the JSON results")
    parser.add_argument(
        "--loop-budget-ms",
        type=float,
        help="tandem's OPTIONS['loop_budget_ms'] (default: the backend's; 0: every statement hops)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.iterations = 2, 30
    return args


def configure_django(directory: Path, loop_budget_ms: float | None = None) -> None:
    """A minimal project: tandem, the benchmark's models, two aliases on one file."""
    import django
    from django.conf import settings

    if sys.path and Path(sys.path[0]).resolve() == BENCH_DIR:
        sys.path.pop(0)  # bench/http.py would shadow the standard library's http
    for path in (str(ROOT), str(BENCH_DIR)):
        if path not in sys.path:
            sys.path.append(path)
    name = str(directory / "bench.sqlite3")
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "tandem.db.backends.sqlite3",
                "NAME": name,
                "OPTIONS": {} if loop_budget_ms is None else {"loop_budget_ms": loop_budget_ms},
            },
            # Same file, same journal mode; stock Django, persistent connection
            # (sync mode, and stock async in Django's one sync_to_async thread).
            SYNC: {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": name,
                "CONN_MAX_AGE": None,
                "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL"},
            },
        },
        INSTALLED_APPS=["tandem", "benchapp"],
        SECRET_KEY="tandem-bench",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


def prepare() -> dict[str, int]:
    """Create the tables and rows the operations use; returns their keys."""
    from benchapp.models import Author, Book
    from django.db import connections

    with connections["default"].schema_editor() as editor:
        editor.create_model(Author)
        editor.create_model(Book)
    author = Author.objects.create(name="Reader", email="reader@example.com")
    Book.objects.bulk_create(Book(title=f"Book {i}", author=author) for i in range(BOOKS))
    scratch = Author.objects.create(name="Scratch")
    return {"author": author.pk, "book": Book.objects.first().pk, "scratch": scratch.pk}


# -- the operations: a sync and an async version each ---------------------------


def operations(keys: dict[str, int]) -> dict[str, dict[str, Any]]:
    """name -> {"sync": fn, "stock": async fn, "tandem": async fn, "divisor": n}.

    ``divisor`` divides ``--iterations`` for the slower writes.
    """
    from asgiref.sync import sync_to_async
    from benchapp.models import Author, Book
    from django.db import transaction

    from tandem import aatomic

    def books(alias: str):
        return Book.objects.using(alias).filter(author_id=keys["author"])

    def atomic_creates() -> None:
        with transaction.atomic(using=SYNC):
            for _ in range(3):
                Author.objects.using(SYNC).create(name="w")

    async def aatomic_creates() -> None:
        async with aatomic():
            for _ in range(3):
                await Author.objects.acreate(name="w")

    def alist(alias: str) -> Callable:
        async def read() -> list:
            return [b async for b in books(alias).order_by("pk")[:BOOKS]]

        return read

    return {
        "get by pk": {
            SYNC: lambda: Book.objects.using(SYNC).get(pk=keys["book"]),
            STOCK: lambda: Book.objects.using(SYNC).aget(pk=keys["book"]),
            TANDEM: lambda: Book.objects.aget(pk=keys["book"]),
            "divisor": 1,
        },
        "count": {
            SYNC: books(SYNC).count,
            STOCK: books(SYNC).acount,
            TANDEM: books("default").acount,
            "divisor": 1,
        },
        f"list {BOOKS}": {
            SYNC: lambda: list(books(SYNC).order_by("pk")[:BOOKS]),
            STOCK: alist(SYNC),
            TANDEM: alist("default"),
            "divisor": 1,
        },
        "create (autocommit)": {
            SYNC: lambda: Author.objects.using(SYNC).create(name="w"),
            STOCK: lambda: Author.objects.using(SYNC).acreate(name="w"),
            TANDEM: lambda: Author.objects.acreate(name="w"),
            "divisor": 4,
        },
        # Stock Django has no async atomic: a stock user wraps a sync function.
        "atomic, 3 creates": {
            SYNC: atomic_creates,
            STOCK: sync_to_async(atomic_creates),
            TANDEM: aatomic_creates,
            "divisor": 8,
        },
    }


# -- timing ------------------------------------------------------------------------


def time_sync(fn: Callable, calls: int) -> float:
    """µs per call of ``fn()``, after a short warm-up."""
    for _ in range(5):
        fn()
    gc.collect()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


async def time_async(fn: Callable, calls: int) -> float:
    """µs per ``await fn()``, one after the other, after a short warm-up."""
    for _ in range(5):
        await fn()
    gc.collect()
    start = time.perf_counter()
    for _ in range(calls):
        await fn()
    return (time.perf_counter() - start) / calls * 1e6


def bare_hop(calls: int) -> tuple[float, float]:
    """µs per ``noop()``: called directly, and through a worker from the bridge."""
    from tandem import native
    from tandem.db.threaded import Worker

    def noop() -> None:
        return None

    worker = Worker()

    def hops() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            worker.run(noop)
        return (time.perf_counter() - start) / calls * 1e6

    try:
        threaded = asyncio.run(native(hops)())
    finally:
        worker.stop()
    return time_sync(noop, calls), threaded


async def count_hops(ops: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Worker hops per tandem operation (averaged over a few calls)."""
    from tandem.db.threaded import Worker

    counted = {"hops": 0}
    run = Worker.run

    def counting_run(self, fn, *args, **kwargs):
        counted["hops"] += 1
        return run(self, fn, *args, **kwargs)

    result = {}
    Worker.run = counting_run
    try:
        for name, op in ops.items():
            await op[TANDEM]()  # a warm connection, as in the timed loop
            counted["hops"] = 0
            for _ in range(10):
                await op[TANDEM]()
            result[name] = counted["hops"] / 10
    finally:
        Worker.run = run
    return result


async def async_round(ops, mode: str, iterations: int) -> dict[str, float]:
    """One round of every operation in an async mode."""
    return {name: await time_async(op[mode], max(1, iterations // op["divisor"])) for name, op in ops.items()}


def one_round(ops, mode: str, iterations: int) -> dict[str, float]:
    """One round of every operation in ``mode``."""
    if mode == SYNC:
        return {name: time_sync(op[SYNC], max(1, iterations // op["divisor"])) for name, op in ops.items()}
    return asyncio.run(async_round(ops, mode, iterations))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All rounds; returns the results document."""
    ops = operations(prepare())
    rounds: dict[str, dict[str, list[float]]] = {name: {mode: [] for mode in MODES} for name in ops}
    hop_rounds: dict[str, list[float]] = {"direct": [], "worker": []}
    for mode in MODES:  # unrecorded: caches, connections, pools warm up
        one_round(ops, mode, args.iterations)
    for index in range(args.rounds):
        shift = index % len(MODES)  # rotate the order: noise hurts every mode alike
        for mode in MODES[shift:] + MODES[:shift]:
            for name, value in one_round(ops, mode, args.iterations).items():
                rounds[name][mode].append(value)
        direct, worker = bare_hop(args.iterations * 10)
        hop_rounds["direct"].append(direct)
        hop_rounds["worker"].append(worker)
    hops = asyncio.run(count_hops(ops))
    operations_out = {}
    for name, values in rounds.items():
        medians = {mode: statistics.median(values[mode]) for mode in MODES}
        operations_out[name] = {
            **{f"{mode}_us": medians[mode] for mode in MODES},
            "tandem_vs_sync": medians[TANDEM] / medians[SYNC],
            "stock_vs_tandem": medians[STOCK] / medians[TANDEM],
            "hops": hops[name],
            "rounds_us": values,
        }
    return {
        "machine": machine(),
        "config": {
            "rounds": args.rounds,
            "iterations": args.iterations,
            "loop_budget_ms": args.loop_budget_ms,
        },
        "operations": operations_out,
        "bare_hop": {
            "direct_us": statistics.median(hop_rounds["direct"]),
            "worker_us": statistics.median(hop_rounds["worker"]),
            "rounds_us": hop_rounds,
        },
    }


def machine() -> dict[str, Any]:
    """Versions and the machine, so results can be told apart."""

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "python": platform.python_version(),
        "django": version("django"),
        "greenlet": version("greenlet"),
        "sqlite": sqlite3.sqlite_version,
        "commit": commit,
        "cpus": __import__("os").cpu_count(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def report(results: dict[str, Any]) -> None:
    """Print the table."""
    rows = results["operations"]
    width = max(map(len, [*rows, "bare hop (noop)"]))
    print(f"Median of {results['config']['rounds']} rounds, µs per operation")
    print(
        f"{'operation':<{width}}  {'sync':>8}  {'stock async':>11}  {'tandem':>8}"
        f"  {'tandem/sync':>11}  {'stock/tandem':>12}  {'hops':>4}"
    )
    for name, row in rows.items():
        print(
            f"{name:<{width}}  {row['sync_us']:8.1f}  {row['stock_us']:11.1f}  {row['tandem_us']:8.1f}"
            f"  {row['tandem_vs_sync']:10.2f}x  {row['stock_vs_tandem']:11.2f}x  {row['hops']:4.1f}"
        )
    hop = results["bare_hop"]
    print(f"{'bare hop (noop)':<{width}}  {hop['direct_us']:8.2f}  {'':>11}  {hop['worker_us']:8.1f}")


def main(argv: list[str] | None = None) -> None:
    """Set up a throw-away database, measure, report, save."""
    args = parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="tandem-sqlite-bench-"))
    try:
        configure_django(directory, args.loop_budget_ms)
        results = run(args)
        from django.db import connections

        connections.close_all()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    report(results)
    if not args.no_save:
        save(results, quick=args.quick)


def save(results: dict[str, Any], quick: bool) -> None:
    """Write ``sqlite-hop-py<X.Y>-django<version>-<UTC time>.json``; full runs also the latest."""
    info = results["machine"]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    python = ".".join(info["python"].split(".")[:2])
    name = f"sqlite-hop-py{python}-django{info['django']}-{stamp}{'-quick' if quick else ''}.json"
    text = json.dumps(results, indent=2) + "\n"
    RESULTS.parent.mkdir(exist_ok=True)
    written = [RESULTS.parent / name]
    if not quick:
        written.append(RESULTS)
    for path in written:
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
