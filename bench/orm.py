#!/usr/bin/env python
"""Django's ORM three ways on one PostgreSQL server: sync, stock async, tandem.

Run from the repository root::

    python bench/orm.py              # full run: 5 rounds, ~2 minutes
    python bench/orm.py --quick      # smoke run: a few seconds
    python bench/orm.py --profile aget   # where tandem's aget spends its time

Modes, each on its own alias of the same database:

* ``sync``: the sync ORM in a worker thread without an event loop (what a
  WSGI view does); stock backend, no pool, persistent connection;
* ``stock``: Django's async API (``aget``, ``acreate``...) on the stock backend
  with Django's psycopg_pool, awaited on an asyncio loop;
* ``tandem``: the same async API on a ``tandem.db.backends.postgresql`` alias.

Each operation is timed sequentially as µs per operation (the parallel row: ms
per batch of concurrent queries). Every round measures every operation in
every mode, the mode order rotating from round to round so a noisy moment is
spread over all of them; the report shows the median of the rounds. Results
also go to ``bench/results/`` as JSON (see bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/tandem_bench"

MODES = ("sync", "stock", "tandem")
ALIASES = {"sync": "default", "stock": "stock", "tandem": "tandem"}
HEADERS = {"sync": "sync", "stock": "stock async", "tandem": "tandem"}

# What tandem aims for (docs): close to sync per call, clearly ahead of stock
# async, and real concurrency for slow queries.
TARGET_TANDEM_VS_SYNC = 1.10
TARGET_STOCK_VS_TANDEM = 1.3
TARGET_PARALLEL_MS = 80.0


# -- command line --------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; ``--quick`` lowers rounds and iterations."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds, median reported (default 5)")
    parser.add_argument(
        "--iterations",
        type=int,
        default=200,
        help="calls per operation per round (default 200; slow ops fewer)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 20 iterations")
    parser.add_argument(
        "--url",
        default=os.environ.get("TANDEM_BENCH_URL", DEFAULT_URL),
        help=f"PostgreSQL database, created if missing (default $TANDEM_BENCH_URL or {DEFAULT_URL})",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write JSON results")
    parser.add_argument(
        "--profile",
        metavar="OP",
        help="instead of the benchmark, profile one operation (e.g. aget) in --profile-mode",
    )
    parser.add_argument("--profile-mode", choices=("stock", "tandem"), default="tandem")
    parser.add_argument("--profile-all", action="store_true", help="show every frame in the profile")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.iterations = 2, 20
    if args.rounds < 1 or args.iterations < 1:
        parser.error("--rounds and --iterations must be at least 1")
    return args


# -- database and Django setup -------------------------------------------------


def ensure_database(url: str) -> None:
    """Create the benchmark database if missing, via the server's ``postgres`` db."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def database_settings(url: str) -> dict[str, dict[str, Any]]:
    """One alias per mode, all on the database at ``url``."""
    parts = urlsplit(url)
    server = {
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }
    return {
        ALIASES["sync"]: {**server, "ENGINE": "django.db.backends.postgresql", "CONN_MAX_AGE": None},
        ALIASES["stock"]: {
            **server,
            "ENGINE": "django.db.backends.postgresql",
            "OPTIONS": {"pool": {"min_size": 10, "max_size": 10}},
        },
        ALIASES["tandem"]: {
            **server,
            "ENGINE": "tandem.db.backends.postgresql",
            "OPTIONS": {"pool": {"max_size": 10}},
        },
    }


def configure_django(url: str) -> None:
    """Settings for a minimal project: tandem plus the benchmark's models."""
    import django
    from django.conf import settings

    if str(BENCH_DIR) not in sys.path:  # benchapp and workload live next to this file
        sys.path.insert(0, str(BENCH_DIR))
    settings.configure(
        DATABASES=database_settings(url),
        INSTALLED_APPS=["tandem", "benchapp"],
        SECRET_KEY="tandem-bench",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


# -- timing --------------------------------------------------------------------


class Sample(NamedTuple):
    """One measurement: seconds per call, wall clock and this process's CPU."""

    wall: float
    cpu: float  # all threads: for stock async it includes asgiref's worker thread


def time_sync(fn: Callable, alias: str, fixture: Any, calls: int, warmup: int) -> Sample:
    """Per call of ``fn(alias, fixture)``, measured in the calling thread."""
    for _ in range(warmup):
        fn(alias, fixture)
    gc.collect()  # so no collection left over from the last batch lands in this one
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn(alias, fixture)
    return Sample((time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls)


async def time_async(fn: Callable, alias: str, fixture: Any, calls: int, warmup: int) -> Sample:
    """Per call of ``await fn(alias, fixture)``, awaited one after the other."""
    for _ in range(warmup):
        await fn(alias, fixture)
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await fn(alias, fixture)
    return Sample((time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls)


class Runner:
    """Runs measurements in each mode; owns the sync mode's worker thread."""

    def __init__(self, fixture: Any) -> None:
        self.fixture = fixture
        # One thread for all sync work, like one WSGI worker: its connection
        # persists (CONN_MAX_AGE=None) from call to call.
        self.sync_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-sync")

    async def measure(self, op: Any, mode: str, calls: int, warmup: int) -> Sample:
        """Time ``calls`` calls of ``op`` in ``mode``."""
        alias = ALIASES[mode]
        if mode == "sync":
            loop = asyncio.get_running_loop()
            # Timed inside the thread: the hand-off to it is not the ORM's cost.
            return await loop.run_in_executor(
                self.sync_thread, time_sync, op.sync, alias, self.fixture, calls, warmup
            )
        return await time_async(getattr(op, mode), alias, self.fixture, calls, warmup)

    async def close(self) -> None:
        """Close every connection the modes opened, each in the thread that owns it."""
        from asgiref.sync import sync_to_async
        from django.db import connections

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.sync_thread, connections.close_all)
        self.sync_thread.shutdown()
        # Stock async calls all ran in asgiref's thread-sensitive thread.
        await sync_to_async(_close_stock)()
        # tandem's pool closes with the loop (asyncio.run's shutdown).


def _close_stock() -> None:
    from django.db import connections

    wrapper = connections[ALIASES["stock"]]
    wrapper.close()
    wrapper.close_pool()


# -- the benchmark -------------------------------------------------------------


def mode_order(round_index: int) -> tuple[str, ...]:
    """The modes, rotated by round so none always runs first (or last)."""
    shift = round_index % len(MODES)
    return MODES[shift:] + MODES[:shift]


async def run_rounds(operations: tuple, fixture: Any, args: argparse.Namespace) -> dict[str, dict]:
    """Every round's sample: ``raw[op.key][mode] == [round0, round1, ...]``."""
    runner = Runner(fixture)
    raw: dict[str, dict[str, list[Sample]]] = {op.key: {mode: [] for mode in MODES} for op in operations}
    try:
        # Warm-up round, not recorded: pools fill, statements and caches warm.
        for op in operations:
            for mode in MODES:
                await runner.measure(op, mode, max(2, op.iterations(args.iterations) // 4), 0)
        for index in range(args.rounds):
            started = time.perf_counter()
            for op in operations:
                calls = op.iterations(args.iterations)
                for mode in mode_order(index):
                    sample = await runner.measure(op, mode, calls, max(1, calls // 20))
                    raw[op.key][mode].append(sample)
            elapsed = time.perf_counter() - started
            print(f"  round {index + 1}/{args.rounds} done in {elapsed:.1f} s", flush=True)
    finally:
        await runner.close()
    return raw


async def profile_operation(operations: tuple, fixture: Any, args: argparse.Namespace) -> None:
    """Profile ``--iterations`` calls of one operation with pyinstrument, after a warm-up.

    A sampling profiler, because cProfile misreads greenlet switches and
    coroutine resumptions as calls. The bridge greenlet's stack (the sync ORM
    code) shows up as a root of its own, next to the event loop's.
    """
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("--profile needs pyinstrument: pip install pyinstrument") from None
    by_key = {op.key: op for op in operations}
    if args.profile not in by_key:
        raise SystemExit(f"unknown operation {args.profile!r}; choose from {', '.join(by_key)}")
    op, mode = by_key[args.profile], args.profile_mode
    runner = Runner(fixture)
    calls = op.iterations(args.iterations)
    profiler = Profiler(interval=0.0002, async_mode="disabled")
    try:
        await runner.measure(op, mode, max(2, calls // 4), 0)
        profiler.start()
        sample = await runner.measure(op, mode, calls, 0)
        profiler.stop()
    finally:
        await runner.close()
    print(
        f"{op.title} in {mode}: {calls} calls, {sample.wall * 1e6:.1f} µs wall and "
        f"{sample.cpu * 1e6:.1f} µs CPU per call, under the profiler"
    )
    print(profiler.output_text(unicode=False, color=False, show_all=args.profile_all))


# -- results -------------------------------------------------------------------


def summarize(operations: tuple, raw: dict[str, dict[str, list[Sample]]]) -> list[dict[str, Any]]:
    """Per operation: unit, medians per mode (wall and CPU), the two ratios, raw rounds."""
    rows = []
    for op in operations:
        scale = 1e3 if op.in_ms else 1e6
        rounds = {mode: [sample.wall * scale for sample in raw[op.key][mode]] for mode in MODES}
        cpu_rounds = {mode: [sample.cpu * scale for sample in raw[op.key][mode]] for mode in MODES}
        median = {mode: statistics.median(rounds[mode]) for mode in MODES}
        rows.append(
            {
                "key": op.key,
                "title": op.title,
                "unit": "ms per call" if op.in_ms else "µs per op",
                "median": median,
                "tandem_vs_sync": median["tandem"] / median["sync"],
                "stock_vs_tandem": median["stock"] / median["tandem"],
                "median_cpu": {mode: statistics.median(cpu_rounds[mode]) for mode in MODES},
                "rounds": rounds,
                "cpu_rounds": cpu_rounds,
            }
        )
    return rows


def check_targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Each target: whether it is met, and the operations that miss it."""
    per_op = [row for row in rows if row["unit"] == "µs per op"]
    parallel = next(row for row in rows if row["key"] == "parallel")
    return {
        "tandem_vs_sync": {
            "target": f"<= {TARGET_TANDEM_VS_SYNC:.2f}x",
            "worst": max((row["tandem_vs_sync"], row["key"]) for row in per_op),
            "missed": [row["key"] for row in per_op if row["tandem_vs_sync"] > TARGET_TANDEM_VS_SYNC],
        },
        "stock_vs_tandem": {
            "target": f">= {TARGET_STOCK_VS_TANDEM:.2f}x",
            "worst": min((row["stock_vs_tandem"], row["key"]) for row in per_op),
            "missed": [row["key"] for row in per_op if row["stock_vs_tandem"] < TARGET_STOCK_VS_TANDEM],
        },
        "parallel_ms": {
            "target": f"<= {TARGET_PARALLEL_MS:g} ms",
            "worst": (parallel["median"]["tandem"], "parallel"),
            "missed": [] if parallel["median"]["tandem"] <= TARGET_PARALLEL_MS else ["parallel"],
        },
    }


def print_report(rows: list[dict[str, Any]], targets: dict[str, Any], rounds: int) -> None:
    """Wall-clock medians, client CPU medians, then the targets."""
    print(f"\nWall clock, median of {rounds} rounds (µs per operation; [ms]: ms per call)\n")
    print_medians(rows, "median", f"{'tandem/sync':>13}{'stock/tandem':>14}", _ratios)
    print("\nClient CPU (this process, all threads), median: what each mode costs the machine\n")
    print_medians(rows, "median_cpu", f"{'tandem-sync':>13}", _cpu_overhead)
    print_targets(targets)


def _ratios(row: dict[str, Any]) -> str:
    return f"{row['tandem_vs_sync']:>12.2f}x{row['stock_vs_tandem']:>13.2f}x"


def _cpu_overhead(row: dict[str, Any]) -> str:
    return f"{row['median_cpu']['tandem'] - row['median_cpu']['sync']:>+13.1f}"


def print_medians(rows: list[dict[str, Any]], field: str, extra_header: str, extra: Callable) -> None:
    """One line per operation: ``row[field]`` for each mode, then ``extra(row)``."""
    header = f"{'operation':<32}" + "".join(f"{HEADERS[mode]:>13}" for mode in MODES) + extra_header
    print(header)
    print("-" * len(header))
    for row in rows:
        title = row["title"] + (" [ms]" if row["unit"] == "ms per call" else "")
        values = "".join(f"{row[field][mode]:>13.1f}" for mode in MODES)
        print(f"{title:<32}{values}{extra(row)}")


def print_targets(targets: dict[str, Any]) -> None:
    """Each target, its worst case and whether it is met."""
    print("\nTargets (wall clock):")
    descriptions = {
        "tandem_vs_sync": "tandem per op vs sync",
        "stock_vs_tandem": "tandem speed-up over stock async",
        "parallel_ms": "10 parallel 50 ms queries (tandem)",
    }
    for key, description in descriptions.items():
        target = targets[key]
        value, where = target["worst"]
        shown = f"{value:.1f} ms" if key == "parallel_ms" else f"{value:.2f}x ({where})"
        verdict = "met" if not target["missed"] else "MISSED by " + ", ".join(target["missed"])
        print(f"  {description:<36} {target['target']:<10} worst {shown:<22} {verdict}")


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: versions, cores, load, server."""
    import django
    from django.db import connections

    wrapper = connections[ALIASES["sync"]]
    with wrapper.cursor():  # to read the server version
        server = wrapper.pg_version
    wrapper.close()
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "django": django.__version__,
        "psycopg": package_version("psycopg"),
        "psycopg_pool": package_version("psycopg-pool"),
        "greenlet": package_version("greenlet"),
        "asgiref": package_version("asgiref"),
        "tandem": package_version("django-tandem"),
        "tandem_commit": git_commit(),
        "nproc": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "postgresql": server,
    }


def git_commit() -> str | None:
    """The repository's HEAD, if this runs from a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip()


def save_results(document: dict[str, Any], quick: bool) -> Path:
    """Write the timestamped JSON file; full runs also refresh ``orm-latest.json``."""
    info = document["machine"]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    python = ".".join(info["python"].split(".")[:2])
    name = f"orm-py{python}-django{info['django']}-{stamp}{'-quick' if quick else ''}.json"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    path = RESULTS_DIR / name
    path.write_text(text, encoding="utf-8")
    if not quick:  # a smoke run should not replace the last real numbers
        (RESULTS_DIR / "orm-latest.json").write_text(text, encoding="utf-8")
    return path


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# -- entry point ---------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Set up, measure, report."""
    args = parse_args(argv)
    ensure_database(args.url)
    configure_django(args.url)
    import workload  # needs Django set up
    from django.db import connections

    fixture = workload.prepare(ALIASES["sync"])
    info = machine_info()
    connections.close_all()  # the main thread's setup connection; the loop runs here next
    if args.profile:
        asyncio.run(profile_operation(workload.OPERATIONS, fixture, args))
        return 0

    print(
        f"ORM benchmark: Python {info['python']}, Django {info['django']}, "
        f"{args.rounds} rounds x {args.iterations} iterations, {info['nproc']} cores",
        flush=True,
    )
    started = datetime.now(timezone.utc)
    raw = asyncio.run(run_rounds(workload.OPERATIONS, fixture, args))
    rows = summarize(workload.OPERATIONS, raw)
    targets = check_targets(rows)
    print_report(rows, targets, args.rounds)
    if not args.no_save:
        document = {
            "benchmark": "orm",
            "started": started.isoformat(),
            "finished": datetime.now(timezone.utc).isoformat(),
            "machine": info,
            "config": {
                "rounds": args.rounds,
                "iterations": {op.key: op.iterations(args.iterations) for op in workload.OPERATIONS},
                "quick": args.quick,
                "databases": database_settings(args.url),
            },
            "operations": rows,
            "targets": targets,
        }
        print(f"\nResults: {display_path(save_results(document, args.quick))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
