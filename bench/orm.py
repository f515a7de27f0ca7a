#!/usr/bin/env python
"""Django's ORM three ways on each database: sync, stock async, tandem.

Run from the repository root::

    python bench/orm.py                  # PostgreSQL, SQLite and MariaDB/MySQL, ~3 minutes
    python bench/orm.py --db sqlite      # one database, ~1 minute
    python bench/orm.py --quick          # smoke run, ~35 s
    python bench/orm.py --profile aget   # where tandem's aget spends its time (PostgreSQL)

For each database, three modes, each on its own alias of the same database:

* ``sync``: the sync ORM in a worker thread without an event loop (what a
  WSGI view does); stock backend, persistent connection;
* ``stock``: Django's async API (``aget``, ``acreate``...) on the stock
  backend, awaited on an asyncio loop: with Django's psycopg_pool on
  PostgreSQL; SQLite and MySQL have no stock pool, so a persistent connection
  in asgiref's thread;
* ``tandem``: the same async API on a ``tandem.db.backends.<vendor>`` alias
  with tandem's pool.

Each operation is timed sequentially as µs per operation (the parallel row: ms
per batch of concurrent queries). Every round measures every operation in
every mode, the mode order rotating from round to round so a noisy moment is
spread over all of them; the report shows the median of the rounds. Results
also go to ``bench/results/`` as JSON (see bench/README.md).

Django is configured once per process, so ``--db all`` (the default) runs
this script once per database, in a subprocess, and then prints a table of
all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
# Run as a script, bench/ comes first on sys.path, and bench/http.py would
# shadow the standard library's http package that Django imports.
if sys.path and Path(sys.path[0]).resolve() == BENCH_DIR:
    sys.path.pop(0)
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/tandem_bench"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/tandem_bench"

DATABASES = ("postgresql", "sqlite", "mysql")  # what --db all runs, in this order
ENGINES = {  # per database: the stock backend (sync and stock modes), tandem's
    "postgresql": ("django.db.backends.postgresql", "tandem.db.backends.postgresql"),
    "sqlite": ("django.db.backends.sqlite3", "tandem.db.backends.sqlite3"),
    "mysql": ("django.db.backends.mysql", "tandem.db.backends.mysql"),
}

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
    parser.add_argument(
        "--db",
        choices=(*DATABASES, "all"),
        help="the database to run on; all: each in turn, in a subprocess (default: all; "
        "postgresql with --profile)",
    )
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
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("TANDEM_BENCH_MYSQL_URL", DEFAULT_MYSQL_URL),
        help="MariaDB/MySQL database, created if missing "
        f"(default $TANDEM_BENCH_MYSQL_URL or {DEFAULT_MYSQL_URL})",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write JSON results")
    parser.add_argument(
        "--profile",
        metavar="OP",
        help="instead of the benchmark, profile one operation (e.g. aget) in --profile-mode",
    )
    parser.add_argument("--profile-mode", choices=("stock", "tandem"), default="tandem")
    parser.add_argument("--profile-all", action="store_true", help="show every frame in the profile")
    # --db all hands each subprocess a file for its results.
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.iterations = 2, 20
    if args.rounds < 1 or args.iterations < 1:
        parser.error("--rounds and --iterations must be at least 1")
    if args.db is None:
        args.db = "postgresql" if args.profile else "all"
    if args.profile and args.db == "all":
        parser.error("--profile runs on one database: choose it with --db")
    return args


# -- database and Django setup -------------------------------------------------


def ensure_database(db: str, args: argparse.Namespace) -> dict[str, Any]:
    """Create the benchmark database if missing; its connection settings (NAME, HOST...)."""
    if db == "postgresql":
        ensure_postgresql(args.url)
        return server_settings(args.url)
    if db == "mysql":
        ensure_mysql(args.mysql_url)
        return server_settings(args.mysql_url)
    # A new file each run, in a directory main() removes at the end.
    directory = tempfile.mkdtemp(prefix="tandem-bench-")
    return {"NAME": str(Path(directory) / "bench.sqlite3")}


def ensure_postgresql(url: str) -> None:
    """Create the PostgreSQL database if missing, via the server's ``postgres`` db."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def ensure_mysql(url: str) -> None:
    """Create the MariaDB/MySQL database if missing."""
    import MySQLdb

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    conn = MySQLdb.connect(
        host=parts.hostname or "localhost",
        port=parts.port or 3306,
        user=parts.username or "",
        password=parts.password or "",
    )
    try:
        quoted = "`" + name.replace("`", "``") + "`"
        conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS {quoted} CHARACTER SET utf8mb4")
    finally:
        conn.close()


def server_settings(url: str) -> dict[str, Any]:
    """NAME, USER, PASSWORD, HOST and PORT of the database at ``url``."""
    parts = urlsplit(url)
    return {
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


def database_settings(db: str, server: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One alias per mode, all on the same database."""
    stock_engine, tandem_engine = ENGINES[db]
    if db == "postgresql":
        stock = {"OPTIONS": {"pool": {"min_size": 10, "max_size": 10}}}
    else:  # no pool in Django: one persistent connection, in asgiref's thread
        stock = {"CONN_MAX_AGE": None}
    return {
        ALIASES["sync"]: {**server, "ENGINE": stock_engine, "CONN_MAX_AGE": None},
        ALIASES["stock"]: {**server, "ENGINE": stock_engine, **stock},
        ALIASES["tandem"]: {**server, "ENGINE": tandem_engine, "OPTIONS": {"pool": {"max_size": 10}}},
    }


def configure_django(databases: dict[str, dict[str, Any]]) -> None:
    """Settings for a minimal project: tandem plus the benchmark's models."""
    import django
    from django.conf import settings

    if str(BENCH_DIR) not in sys.path:  # benchapp and workload live next to this file
        sys.path.append(str(BENCH_DIR))  # last: bench/http.py must not shadow http
    settings.configure(
        DATABASES=databases,
        INSTALLED_APPS=["tandem", "benchapp"],
        SECRET_KEY="tandem-bench",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        # Every mode measures Django's own get(): the fast lane is measured
        # on its own (bench/fastlane.py), against these same baselines.
        TANDEM_FAST_LANE=False,
    )
    django.setup()


def sqlite_wal() -> None:
    """Put the new SQLite file in WAL mode, the way tandem's backend does by default.

    tandem's connections switch a file database to WAL when they open; the
    journal mode belongs to the file, so the stock aliases' connections use
    WAL too. Done first, before any other connection is open.
    """
    from django.db import connections

    wrapper = connections[ALIASES["tandem"]]
    wrapper.ensure_connection()
    wrapper.close()


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
    if wrapper.vendor == "postgresql":  # the only stock pool here
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


def print_report(rows: list[dict[str, Any]], targets: dict[str, Any], rounds: int, label: str) -> None:
    """Wall-clock medians, client CPU medians, then the targets."""
    print(f"\n{label}: wall clock, median of {rounds} rounds (µs per operation; [ms]: ms per call)\n")
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


def print_targets(targets: dict[str, Any], heading: str = "\nTargets (wall clock):") -> None:
    """Each target, its worst case and whether it is met."""
    print(heading)
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


def machine_info(db: str) -> dict[str, Any]:
    """What the numbers depend on: versions, cores, load, database server."""
    import django

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "django": django.__version__,
        "psycopg": package_version("psycopg"),
        "psycopg_pool": package_version("psycopg-pool"),
        "mysqlclient": package_version("mysqlclient"),
        "greenlet": package_version("greenlet"),
        "asgiref": package_version("asgiref"),
        "tandem": package_version("django-tandem"),
        "tandem_commit": git_commit(),
        "nproc": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "database": db,
        **server_info(db),
    }


def server_info(db: str) -> dict[str, Any]:
    """The server's version and a label for reports; for SQLite, each alias's journal mode."""
    from django.db import connections

    wrapper = connections[ALIASES["sync"]]
    try:
        if db == "postgresql":
            with wrapper.cursor():  # to read the server version
                version = wrapper.pg_version
            major, minor = divmod(version, 10000)
            return {"postgresql": version, "label": f"PostgreSQL {major}.{minor}"}
        if db == "mysql":
            with wrapper.cursor():
                version = wrapper.mysql_server_info
            name = "MariaDB" if wrapper.mysql_is_mariadb else "MySQL"
            return {"mysql": version, "label": f"{name} {version.split('-')[0]}"}
        journal = {}
        for mode, alias in ALIASES.items():
            with connections[alias].cursor() as cursor:
                cursor.execute("PRAGMA journal_mode")
                journal[mode] = cursor.fetchone()[0]
        return {
            "sqlite": sqlite3.sqlite_version,
            "journal_mode": journal,
            "label": f"SQLite {sqlite3.sqlite_version}",
        }
    finally:
        connections.close_all()


def git_commit() -> str | None:
    """The repository's HEAD, if this runs from a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return result.stdout.strip()


def save_results(document: dict[str, Any], name: str, quick: bool) -> Path:
    """Write ``orm-<name>-...-<UTC time>.json``; full runs also refresh ``orm-<name>-latest.json``."""
    info = document["machine"]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    python = ".".join(info["python"].split(".")[:2])
    filename = f"orm-{name}-py{python}-django{info['django']}-{stamp}{'-quick' if quick else ''}.json"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    path = RESULTS_DIR / filename
    path.write_text(text, encoding="utf-8")
    if not quick:  # a smoke run should not replace the last real numbers
        (RESULTS_DIR / f"orm-{name}-latest.json").write_text(text, encoding="utf-8")
    return path


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# -- all databases -------------------------------------------------------------


def run_all(args: argparse.Namespace) -> int:
    """Each database in a subprocess of this script, then one table of them all."""
    started = datetime.now(UTC)
    documents: dict[str, dict[str, Any]] = {}
    failed = []
    with tempfile.TemporaryDirectory(prefix="tandem-bench-") as scratch:
        for db in DATABASES:
            result_file = Path(scratch) / f"{db}.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--db", db, *forwarded_flags(args)]
            command += ["--result-file", str(result_file)]
            print(f"\n=== {db} " + "=" * 60, flush=True)
            returncode = subprocess.run(command, check=False).returncode
            if returncode != 0 or not result_file.exists():
                print(f"\n{db}: the benchmark failed (exit status {returncode})", flush=True)
                failed.append(db)
                continue
            documents[db] = json.loads(result_file.read_text(encoding="utf-8"))
    if documents:
        print_combined(documents, args.rounds)
    if documents and not args.no_save:
        combined = {
            "benchmark": "orm-all",
            "started": started.isoformat(),
            "finished": datetime.now(UTC).isoformat(),
            "machine": common_machine_info(documents),
            "failed": failed,
            "databases": documents,
        }
        print(f"\nResults: {display_path(save_results(combined, 'all', args.quick))}")
    if failed:
        print(f"\nFailed: {', '.join(failed)}")
    return 1 if failed else 0


def common_machine_info(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The first database's ``machine``, minus what is that database's own."""
    own = {"database", "label", "loadavg", "journal_mode", *DATABASES}
    first = next(iter(documents.values()))["machine"]
    return {key: value for key, value in first.items() if key not in own}


def forwarded_flags(args: argparse.Namespace) -> list[str]:
    """This run's options, for the subprocess that runs one database."""
    flags = (
        ["--quick"] if args.quick else ["--rounds", str(args.rounds), "--iterations", str(args.iterations)]
    )
    flags += ["--url", args.url, "--mysql-url", args.mysql_url]
    return flags + (["--no-save"] if args.no_save else [])


def print_combined(documents: dict[str, dict[str, Any]], rounds: int) -> None:
    """One line per operation: per database the three modes and the two ratios; then targets."""
    labels = {db: document["machine"]["label"] for db, document in documents.items()}
    rows = {db: {row["key"]: row for row in document["operations"]} for db, document in documents.items()}
    block = 7 * 3 + 7 * 2  # three modes, two ratios
    print(f"\nAll databases: wall clock, median of {rounds} rounds (µs per operation; [ms]: ms per call)")
    print(
        f"t/s = tandem/sync (target <= {TARGET_TANDEM_VS_SYNC:.2f}x), "
        f"s/t = stock async/tandem (target >= {TARGET_STOCK_VS_TANDEM:.2f}x)\n"
    )
    width = 30
    columns = "".join(f"{name:>7}" for name in ("sync", "stock", "tandem", "t/s", "s/t"))
    print((" " * width + "".join(f" | {labels[db]:<{block}}" for db in documents)).rstrip())
    print(f"{'operation':<{width}}" + f" | {columns}" * len(documents))
    print("-" * (width + len(documents) * (block + 3)))
    first = next(iter(documents.values()))
    for op in first["operations"]:
        title = op["title"] + (" [ms]" if op["unit"] == "ms per call" else "")
        line = f"{title:<{width}}"
        for db in documents:
            row = rows[db][op["key"]]
            values = "".join(f"{row['median'][mode]:>7.0f}" for mode in MODES)
            line += f" | {values}{row['tandem_vs_sync']:>6.2f}x{row['stock_vs_tandem']:>6.2f}x"
        print(line)
    for db, document in documents.items():
        print_targets(document["targets"], f"\nTargets, {labels[db]} (wall clock):")


# -- entry point ---------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Set up, measure, report."""
    args = parse_args(argv)
    if args.db == "all":
        return run_all(args)
    server = ensure_database(args.db, args)
    try:
        return run_one(args, server)
    finally:
        if args.db == "sqlite":
            shutil.rmtree(Path(server["NAME"]).parent, ignore_errors=True)


def run_one(args: argparse.Namespace, server: dict[str, Any]) -> int:
    """The benchmark on one database (``args.db``), in this process."""
    configure_django(database_settings(args.db, server))  # Django fills in defaults: a copy
    import workload  # needs Django set up
    from django.db import connections

    if args.db == "sqlite":
        workload.register_sqlite_sleep()
        sqlite_wal()
    fixture = workload.prepare(ALIASES["sync"])
    info = machine_info(args.db)
    connections.close_all()  # the main thread's setup connections; the loop runs here next
    if args.profile:
        asyncio.run(profile_operation(workload.OPERATIONS, fixture, args))
        return 0

    print(
        f"ORM benchmark on {info['label']}: Python {info['python']}, Django {info['django']}, "
        f"{args.rounds} rounds x {args.iterations} iterations, {info['nproc']} cores",
        flush=True,
    )
    started = datetime.now(UTC)
    raw = asyncio.run(run_rounds(workload.OPERATIONS, fixture, args))
    rows = summarize(workload.OPERATIONS, raw)
    targets = check_targets(rows)
    print_report(rows, targets, args.rounds, info["label"])
    document = {
        "benchmark": "orm",
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "machine": info,
        "config": {
            "rounds": args.rounds,
            "iterations": {op.key: op.iterations(args.iterations) for op in workload.OPERATIONS},
            "quick": args.quick,
            "databases": database_settings(args.db, server),
        },
        "operations": rows,
        "targets": targets,
    }
    if not args.no_save:
        print(f"\nResults: {display_path(save_results(document, args.db, args.quick))}")
    if args.result_file:
        args.result_file.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
