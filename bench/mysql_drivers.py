#!/usr/bin/env python
"""Which MySQL driver should tandem's MySQL backend run on? Measure it.

Per-query latency of ``SELECT ... WHERE id = %s`` (execute + fetchone) for
the two MySQLdb-style drivers, each in three or four ways:

* ``sync``: blocking calls in the calling thread, no event loop (what sync
  Django does);
* ``worker hop``: on an asyncio loop, inside ``tandem.native()``, every query
  handed to the connection's own worker thread (``tandem.db.threaded.Worker``)
  and awaited: the path of ``tandem.db.backends.mysql``;
* ``10 tasks``: ten tasks at once, each with its own connection and worker;
  reported as wall time per query over all of them (throughput), which shows
  whether the driver's work overlaps or queues behind the GIL;
* ``bridged socket`` (PyMySQL only, being pure Python): no thread, its socket
  reads and writes awaited on the loop inside ``native()`` (a prototype
  subclass, ``bridged_pymysql``), the protocol work on the loop thread.

Then the whole ORM on mysqlclient, ``aget(pk=...)`` of a ``benchapp`` author:
stock sync Django in a thread (persistent connection), stock async
(``sync_to_async``), tandem in one task, and tandem with a new task per call
(what a request does: its connection comes from the pool and Django's
``connect()`` runs). ``--drivers-only`` skips this part.

Every round measures every case (their order rotates from round to round);
the report is the median over rounds, with the client's CPU time per query
(``time.process_time()``, all threads). Run from the repository root::

    python bench/mysql_drivers.py                  # 5 rounds x 2000 queries, ~1 minute
    python bench/mysql_drivers.py --quick          # smoke run
    python bench/mysql_drivers.py --url mysql://root@127.0.0.1:3306/test

Writes ``bench/results/mysql-drivers-latest.json`` (not with ``--quick`` or
``--no-save``). A driver that is not installed is reported as missing.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(BENCH_DIR.parent))

from tandem.bridge import await_, in_bridge, native  # noqa: E402 - after the path fix-up
from tandem.db.threaded import Worker  # noqa: E402

DEFAULT_URL = "mysql://root@127.0.0.1:3306/test"
TABLE = "tandem_bench_driver"
ROWS = 1000
QUERY = f"SELECT id, name, n FROM {TABLE} WHERE id = %s"
PARALLEL_TASKS = 10

# module to import, distribution name for the version
DRIVERS = {"mysqlclient": ("MySQLdb", "mysqlclient"), "PyMySQL": ("pymysql", "PyMySQL")}
MODES = ("sync", "worker hop", f"{PARALLEL_TASKS} tasks", "bridged socket")
# PyMySQL is pure Python, so its socket I/O can be awaited on the loop itself.
DRIVER_MODES = {"mysqlclient": MODES[:3], "PyMySQL": MODES}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds, median reported (default 5)")
    parser.add_argument("--queries", type=int, default=2000, help="queries per case per round (default 2000)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 200 queries")
    parser.add_argument(
        "--url",
        default=os.environ.get("TANDEM_MYSQL_URL", DEFAULT_URL),
        help=f"MySQL/MariaDB database (default $TANDEM_MYSQL_URL or {DEFAULT_URL})",
    )
    parser.add_argument("--no-save", action="store_true", help="do not write JSON results")
    parser.add_argument("--drivers-only", action="store_true", help="skip the ORM measurements")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.queries = 2, 200
    return args


def connect_kwargs(url: str) -> dict[str, Any]:
    """Keyword arguments both drivers accept, from a ``mysql://`` URL."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": parts.username or "root",
        "password": parts.password or "",
        "database": parts.path.lstrip("/") or "test",
        "charset": "utf8mb4",
        "autocommit": True,
    }


def load_drivers() -> dict[str, Any]:
    """The installed driver modules, by name."""
    found = {}
    for name, (module, _dist) in DRIVERS.items():
        try:
            found[name] = importlib.import_module(module)
        except ImportError:
            print(f"{name}: not installed, skipped")
    return found


def seed(driver: Any, kwargs: dict[str, Any]) -> str:
    """(Re)create the benchmark table; return the server version."""
    conn = driver.connect(**kwargs)
    try:
        cursor = conn.cursor()
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cursor.execute(f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, name VARCHAR(50), n INT)")
        cursor.executemany(
            f"INSERT INTO {TABLE} (id, name, n) VALUES (%s, %s, %s)",
            [(i, f"row {i}", i * 7) for i in range(1, ROWS + 1)],
        )
        cursor.execute("SELECT VERSION()")
        return cursor.fetchone()[0]
    finally:
        conn.close()


def drop(driver: Any, kwargs: dict[str, Any]) -> None:
    """Remove the benchmark table."""
    conn = driver.connect(**kwargs)
    try:
        conn.cursor().execute(f"DROP TABLE IF EXISTS {TABLE}")
    finally:
        conn.close()


def one_query(cursor: Any, pk: int) -> Any:
    """The measured unit: one primary-key lookup, executed and fetched."""
    cursor.execute(QUERY, (pk,))
    return cursor.fetchone()


def run_queries(query: Callable[[int], Any], count: int) -> None:
    """``count`` lookups spread over the table."""
    for i in range(count):
        query(i % ROWS + 1)


# -- the three ways ---------------------------------------------------------------


def time_sync(driver: Any, kwargs: dict[str, Any], count: int) -> tuple[float, float]:
    """µs per query (wall, CPU) for blocking calls in this thread."""
    conn = driver.connect(**kwargs)
    try:
        cursor = conn.cursor()
        run_queries(lambda pk: one_query(cursor, pk), 50)  # warm-up
        return _timed(lambda: run_queries(lambda pk: one_query(cursor, pk), count), count)
    finally:
        conn.close()


def time_worker_hop(driver: Any, kwargs: dict[str, Any], count: int) -> tuple[float, float]:
    """µs per query (wall, CPU) with every query awaited on the connection's worker."""
    return asyncio.run(_hopping(driver, kwargs, count, tasks=1))


def time_parallel(driver: Any, kwargs: dict[str, Any], count: int) -> tuple[float, float]:
    """µs per query (wall, CPU) over ``PARALLEL_TASKS`` tasks running at once."""
    return asyncio.run(_hopping(driver, kwargs, count, tasks=PARALLEL_TASKS))


async def _hopping(driver: Any, kwargs: dict[str, Any], count: int, tasks: int) -> tuple[float, float]:
    connections = [await native(_open_on_worker)(driver, kwargs) for _ in range(tasks)]
    try:
        per_task = max(1, count // tasks)
        await asyncio.gather(*(native(_lookups)(worker, cursor, 50) for worker, cursor, _ in connections))
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(
            *(native(_lookups)(worker, cursor, per_task) for worker, cursor, _ in connections)
        )
        total = per_task * tasks
        wall = (time.perf_counter() - start_wall) / total * 1e6
        cpu = (time.process_time() - start_cpu) / total * 1e6
        return wall, cpu
    finally:
        for worker, _cursor, conn in connections:
            conn.close()
            worker.stop()


def _open_on_worker(driver: Any, kwargs: dict[str, Any]) -> tuple[Worker, Any, Any]:
    worker = Worker()
    conn = worker.run(driver.connect, **kwargs)
    return worker, conn.cursor(), conn


def _lookups(worker: Worker, cursor: Any, count: int) -> None:
    # Inside native(): each run() is one hop to the worker thread and back.
    run_queries(lambda pk: worker.run(one_query, cursor, pk), count)


def _timed(fn: Callable[[], None], count: int) -> tuple[float, float]:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    fn()
    return (
        (time.perf_counter() - start_wall) / count * 1e6,
        (time.process_time() - start_cpu) / count * 1e6,
    )


def time_bridged_socket(driver: Any, kwargs: dict[str, Any], count: int) -> tuple[float, float]:
    """µs per query (wall, CPU) for PyMySQL with its socket awaited on the loop, no thread."""
    return asyncio.run(_bridged(driver, kwargs, count))


async def _bridged(driver: Any, kwargs: dict[str, Any], count: int) -> tuple[float, float]:
    conn = bridged_pymysql(driver)(**kwargs)  # the handshake blocks: not timed
    try:
        cursor = conn.cursor()
        await native(run_queries)(lambda pk: one_query(cursor, pk), 50)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        await native(run_queries)(lambda pk: one_query(cursor, pk), count)
        return (
            (time.perf_counter() - start_wall) / count * 1e6,
            (time.process_time() - start_cpu) / count * 1e6,
        )
    finally:
        conn.close()


def bridged_pymysql(pymysql: Any) -> type:
    """A PyMySQL connection whose reads and writes await the loop inside ``native()``.

    A prototype for this measurement only: PyMySQL does all its socket I/O in
    ``_read_bytes`` and ``_write_bytes``; here they become ``loop.sock_recv``
    and ``loop.sock_sendall``, the pure-Python protocol work staying on the
    loop thread.
    """

    class BridgedPyMySQL(pymysql.connections.Connection):
        _unread = b""

        def _read_bytes(self, num_bytes: int) -> bytes:
            if not in_bridge():  # the handshake, in __init__
                return super()._read_bytes(num_bytes)
            loop = asyncio.get_running_loop()
            self._sock.setblocking(False)  # PyMySQL sets socket timeouts per command
            data = self._unread
            while len(data) < num_bytes:
                chunk = await_(loop.sock_recv(self._sock, 65536))
                if not chunk:
                    raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server")
                data += chunk
            self._unread = data[num_bytes:]
            return data[:num_bytes]

        def _write_bytes(self, data: bytes) -> None:
            if not in_bridge():
                return super()._write_bytes(data)
            self._sock.setblocking(False)
            await_(asyncio.get_running_loop().sock_sendall(self._sock, data))

    return BridgedPyMySQL


MEASURE = {
    "sync": time_sync,
    "worker hop": time_worker_hop,
    f"{PARALLEL_TASKS} tasks": time_parallel,
    "bridged socket": time_bridged_socket,
}


# -- rounds and report ------------------------------------------------------------------


def run_rounds(drivers: dict[str, Any], kwargs: dict[str, Any], args: argparse.Namespace) -> dict:
    """Every case every round, in rotating order; every round's samples kept."""
    cases = [(name, mode) for name in drivers for mode in DRIVER_MODES[name]]
    samples: dict[str, dict[str, dict[str, list[float]]]] = {
        name: {mode: {"wall": [], "cpu": []} for mode in DRIVER_MODES[name]} for name in drivers
    }
    for index in range(args.rounds):
        shift = index % len(cases)
        for name, mode in cases[shift:] + cases[:shift]:
            wall, cpu = MEASURE[mode](drivers[name], kwargs, args.queries)
            samples[name][mode]["wall"].append(round(wall, 2))
            samples[name][mode]["cpu"].append(round(cpu, 2))
        print(f"round {index + 1}/{args.rounds} done", file=sys.stderr)
    return samples


def summarize(samples: dict) -> dict:
    """Median wall and CPU µs per query for each driver and mode."""
    return {
        name: {
            mode: {
                "median_us": round(statistics.median(values["wall"]), 1),
                "median_cpu_us": round(statistics.median(values["cpu"]), 1),
                "rounds_us": values["wall"],
                "cpu_rounds_us": values["cpu"],
            }
            for mode, values in modes.items()
        }
        for name, modes in samples.items()
    }


def print_report(summary: dict, rounds: int) -> None:
    """The table: one row per driver, wall (CPU) µs per query per mode."""
    print(f"\nµs per query, median of {rounds} rounds: wall (client CPU)")
    print(f"{'driver':<13}" + "".join(f"{mode:>20}" for mode in MODES) + f"{'hop cost':>12}")
    for name, modes in summary.items():
        cells = "".join(_cell(modes.get(mode)) for mode in MODES)
        hop = modes["worker hop"]["median_us"] - modes["sync"]["median_us"]
        print(f"{name:<13}{cells}{hop:>+11.1f}")


def _cell(values: dict | None) -> str:
    if values is None:
        return f"{'-':>20}"
    return f"{values['median_us']:>11.1f} ({values['median_cpu_us']:>5.1f})"


# -- the ORM on top: sync, stock async, tandem --------------------------------------------

ORM_MODES = ("sync", "stock async", "tandem", "tandem, task per call")
ORM_ALIASES = {
    "sync": "default",
    "stock async": "stock",
    "tandem": "tandem",
    "tandem, task per call": "tandem",
}
ORM_ROWS = 100
# The parallel batch: each aget sleeps this long on the server.
PARALLEL_ORM_MODES = ("stock async", "tandem")
SLEEP_SECONDS = 0.05


def configure_django(kwargs: dict[str, Any]) -> None:
    """A minimal project: ``benchapp`` on three aliases of the same database."""
    import django
    from django.conf import settings

    sys.path.insert(0, str(BENCH_DIR))  # benchapp lives next to this file
    server = {
        "NAME": kwargs["database"],
        "USER": kwargs["user"],
        "PASSWORD": kwargs["password"],
        "HOST": kwargs["host"],
        "PORT": str(kwargs["port"]),
    }
    stock = {**server, "ENGINE": "django.db.backends.mysql", "CONN_MAX_AGE": None}
    settings.configure(
        DATABASES={
            "default": stock,
            "stock": dict(stock),
            "tandem": {**server, "ENGINE": "tandem.db.backends.mysql", "OPTIONS": {"pool": {"max_size": 10}}},
        },
        INSTALLED_APPS=["tandem", "benchapp"],
        SECRET_KEY="tandem-bench",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()


def orm_table(create: bool) -> None:
    """Create (and fill) or drop the authors table, in sync code."""
    from benchapp.models import Author
    from django.db import connections

    with connections["default"].schema_editor() as editor:
        if create:
            editor.create_model(Author)
        else:
            editor.delete_model(Author)
    if create:
        Author.objects.bulk_create([Author(pk=i, name=f"author {i}") for i in range(1, ORM_ROWS + 1)])
    connections.close_all()


def time_orm(mode: str, count: int) -> tuple[float, float]:
    """µs per ``aget`` (wall, CPU) in ``mode``, after a warm-up."""
    from benchapp.models import Author

    authors = Author.objects.using(ORM_ALIASES[mode])
    if mode == "sync":
        from concurrent.futures import ThreadPoolExecutor

        def lookups(n: int) -> None:
            run_queries(lambda pk: authors.get(pk=pk % ORM_ROWS + 1), n)

        with ThreadPoolExecutor(1) as thread:  # a thread without a loop, like a WSGI worker
            thread.submit(lookups, 50).result()
            return thread.submit(_timed, lambda: lookups(count), count).result()
    return asyncio.run(_time_async_orm(mode, authors, count))


async def _time_async_orm(mode: str, authors: Any, count: int) -> tuple[float, float]:
    async def lookup(pk: int) -> Any:
        return await authors.aget(pk=pk % ORM_ROWS + 1)

    if mode == "tandem, task per call":
        one = lookup
        lookup = lambda pk: asyncio.create_task(one(pk))  # noqa: E731 - a request per call
    for pk in range(50):
        await lookup(pk)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    for pk in range(count):
        await lookup(pk)
    wall = (time.perf_counter() - start_wall) / count * 1e6
    cpu = (time.process_time() - start_cpu) / count * 1e6
    if mode == "stock async":
        from asgiref.sync import sync_to_async

        await sync_to_async(_close_stock)()  # in asgiref's thread, which owns it
    return wall, cpu


def time_orm_parallel(mode: str) -> float:
    """ms for ``PARALLEL_TASKS`` concurrent ``aget``s that each sleep 50 ms on the server."""
    from benchapp.models import Author
    from django.db.models import IntegerField
    from django.db.models.expressions import RawSQL

    sleeping = Author.objects.using(ORM_ALIASES[mode]).annotate(
        slept=RawSQL("SLEEP(%s)", [SLEEP_SECONDS], output_field=IntegerField())
    )

    async def batch() -> float:
        await asyncio.gather(*(sleeping.aget(pk=1) for _ in range(PARALLEL_TASKS)))  # warm-up
        start = time.perf_counter()
        await asyncio.gather(*(sleeping.aget(pk=1) for _ in range(PARALLEL_TASKS)))
        elapsed = (time.perf_counter() - start) * 1e3
        if mode == "stock async":
            from asgiref.sync import sync_to_async

            await sync_to_async(_close_stock)()
        return elapsed

    return asyncio.run(batch())


def _close_stock() -> None:
    from django.db import connections

    connections["stock"].close()


def run_orm_rounds(args: argparse.Namespace) -> dict:
    """Every ORM mode every round, rotating; then the parallel batch per async mode."""
    samples = {mode: {"wall": [], "cpu": []} for mode in ORM_MODES}
    batches: dict[str, list[float]] = {mode: [] for mode in PARALLEL_ORM_MODES}
    count = max(100, args.queries // 4)
    for index in range(args.rounds):
        shift = index % len(ORM_MODES)
        for mode in ORM_MODES[shift:] + ORM_MODES[:shift]:
            wall, cpu = time_orm(mode, count)
            samples[mode]["wall"].append(round(wall, 2))
            samples[mode]["cpu"].append(round(cpu, 2))
        for mode in PARALLEL_ORM_MODES:
            batches[mode].append(round(time_orm_parallel(mode), 1))
        print(f"ORM round {index + 1}/{args.rounds} done", file=sys.stderr)
    parallel = {
        mode: {"median_ms": round(statistics.median(values), 1), "rounds_ms": values}
        for mode, values in batches.items()
    }
    return {"aget": summarize({"aget": samples})["aget"], "parallel": parallel}


def print_orm_report(orm: dict, rounds: int) -> None:
    """The ORM tables: µs per ``aget`` with the ratio to sync Django; the parallel batch."""
    print(f"\nORM aget(pk=...) on mysqlclient, µs per call, median of {rounds} rounds")
    sync = orm["aget"]["sync"]["median_us"]
    for mode, values in orm["aget"].items():
        ratio = values["median_us"] / sync
        print(f"{mode:<24}{values['median_us']:>8.1f} ({values['median_cpu_us']:>5.1f} CPU){ratio:>8.2f}x")
    print(f"\n{PARALLEL_TASKS} concurrent aget()s sleeping {SLEEP_SECONDS * 1e3:g} ms each, ms per batch")
    for mode, values in orm["parallel"].items():
        print(f"{mode:<24}{values['median_ms']:>8.1f}")


def machine_info(server_version: str) -> dict[str, Any]:
    """Versions and load: numbers from different machines are not comparable."""
    versions = {}
    for name, (_module, dist) in DRIVERS.items():
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "drivers": versions,
        "server": server_version,
        "nproc": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    """Seed, measure, report, save."""
    args = parse_args(argv)
    kwargs = connect_kwargs(args.url)
    drivers = load_drivers()
    if not drivers:
        print("no MySQL driver installed: pip install mysqlclient pymysql", file=sys.stderr)
        return 1
    any_driver = next(iter(drivers.values()))
    server = seed(any_driver, kwargs)
    try:
        samples = run_rounds(drivers, kwargs, args)
    finally:
        drop(any_driver, kwargs)
    summary = summarize(samples)
    print_report(summary, args.rounds)
    orm = None
    if not args.drivers_only and "mysqlclient" in drivers:
        configure_django(kwargs)
        orm_table(create=True)
        try:
            orm = run_orm_rounds(args)
        finally:
            orm_table(create=False)
        print_orm_report(orm, args.rounds)
    if args.quick or args.no_save:
        return 0
    document = {
        "benchmark": "mysql-drivers",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(server),
        "config": {"rounds": args.rounds, "queries": args.queries, "query": QUERY, "tasks": PARALLEL_TASKS},
        "results": summary,
        "orm": orm,
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / "mysql-drivers-latest.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nResults: {path.relative_to(BENCH_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
