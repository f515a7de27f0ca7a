"""Run the reliability scenarios against the real servers and print the books.

    python -m chaos                      # every scenario, PostgreSQL, PgBouncer, MariaDB/MySQL, SQLite
    python -m chaos --quick              # fewer tasks and requests (CI: under 2 minutes)
    python -m chaos --db postgresql --scenarios "4a 1"
    python -m chaos --db pgbouncer       # PostgreSQL through a PgBouncer of the runner's (scenario 7)

Each database runs in a process of its own (``--child``), which configures
Django for it (``chaos/settings.py``), runs the scenarios that apply
(``chaos/scenarios``) and hands back one row per scenario. The table says,
per scenario and database, how many requests ran, how many faults were
injected, how many requests failed as the fault must make them fail, and the
columns that must be 0: failed unexpectedly, hung, leaked connections,
leaked tasks, broken invariants. Exit status 1 if any of them is not 0 (or a
database could not be run). JSON: ``bench/results/chaos-latest.json``
(``--quick``: ``bench/results/logs/chaos-quick.json``; ``--out`` to choose).

For ``pgbouncer`` this process starts PgBouncer (``chaos/pgbouncer.py``)
before the child and stops it after, whatever happened. Without PgBouncer
installed that database is skipped, with the reason (a failure under
``TANDEM_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATABASES = ("postgresql", "pgbouncer", "mysql", "sqlite")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks and requests (CI)")
    parser.add_argument("--db", default=" ".join(DATABASES), help="databases, space-separated")
    parser.add_argument("--scenarios", default="", help="scenario keys, space-separated (default: all)")
    parser.add_argument("--out", type=Path, help="JSON results file")
    parser.add_argument("--verbose", action="store_true", help="also list the expected errors")
    parser.add_argument(
        "--soak-minutes", type=float, help="how long the soak (scenario 8) runs (default 10; --quick 0.5)"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per database process")
    parser.add_argument("--child", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--child-results", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.db = args.db.replace(",", " ").split()
    unknown = set(args.db) - set(DATABASES)
    if unknown:
        parser.error(f"unknown database(s) {sorted(unknown)}; choose from {', '.join(DATABASES)}")
    args.scenarios = set(args.scenarios.replace(",", " ").split())
    return args


# -- the child: one database ------------------------------------------------------------


def child(args: argparse.Namespace) -> int:
    from chaos.runner import run_database, setup_django

    setup_django(args.child)
    from chaos.server import server_version

    def report(tally) -> None:
        verdict = "ok" if tally.ok else "FAILED"
        print(
            f"  {tally.key:<3} {tally.title:<42} {tally.database:<10} {verdict:<6} {tally.seconds:6.1f} s",
            flush=True,
        )

    info = {"database": args.child, "server": server_version(args.child), "rows": []}
    info["rows"] = run_database(args.child, args.quick, args.scenarios, report)
    args.child_results.write_text(json.dumps(info, indent=2))
    return 0


# -- the parent: every database, the table -----------------------------------------------


def _row(db: str, title: str, seconds: float, *, unexpected: int = 0, hung: int = 0, **extra) -> dict:
    """A row for a database that gave no rows of its own: why (failed, hung, skipped)."""
    return {
        "key": "-",
        "title": title,
        "database": db,
        "requests": 0,
        "injected_faults": 0,
        "failed_as_expected": 0,
        "failed_unexpectedly": unexpected,
        "hung": hung,
        "leaked_connections": 0,
        "leaked_tasks": 0,
        "broken_invariants": 0,
        "broken_what": [],
        "ok": not (unexpected or hung),
        "notes": [title],
        "memory_before_mb": 0,
        "memory_after_mb": 0,
        "max_loop_lag_ms": 0,
        "figures": {},
        "seconds": round(seconds, 2),
        **extra,
    }


def run_behind_pgbouncer(args: argparse.Namespace) -> tuple[dict, float]:
    """The ``pgbouncer`` database: start PgBouncer, run the child through it, stop PgBouncer."""
    from chaos import pgbouncer

    db = "pgbouncer"
    started = time.perf_counter()
    try:
        bouncer = pgbouncer.PgBouncer.start(pgbouncer.Server.from_environment())
    except pgbouncer.Unavailable as exc:
        if os.environ.get("TANDEM_REQUIRE_SERVICES") == "1":
            why = f"TANDEM_REQUIRE_SERVICES=1 but {exc}"
            return {"database": db, "server": "", "rows": [_row(db, why, 0, unexpected=1)]}, 0.0
        row = _row(db, f"skipped: {exc}", 0, skipped=str(exc))
        return {"database": db, "server": "", "rows": [row]}, 0.0
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        row = _row(db, f"PgBouncer could not be started: {exc}", time.perf_counter() - started, unexpected=1)
        return {"database": db, "server": "", "rows": [row]}, time.perf_counter() - started
    with bouncer:
        info, elapsed = run_child(db, args, {pgbouncer.PORT_ENV: str(bouncer.port)})
    info["server"] = f"{bouncer.version} (pool_mode = transaction) in front of PostgreSQL {info['server']}"
    return info, elapsed


def run_child(
    db: str, args: argparse.Namespace, extra_env: dict[str, str] | None = None
) -> tuple[dict, float]:
    """Run one database's process; its results (or a row saying why there are none)."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        results = Path(handle.name)
    command = [
        sys.executable,
        "-X",
        "faulthandler",
        "-m",
        "chaos",
        "--child",
        db,
        "--child-results",
        str(results),
    ]
    command += ["--quick"] if args.quick else []
    if args.scenarios:
        command += ["--scenarios", " ".join(sorted(args.scenarios))]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "DJANGO_SETTINGS_MODULE": "chaos.settings",
        "TANDEM_CHAOS_DB": db,
        **({"TANDEM_CHAOS_SOAK_MINUTES": str(args.soak_minutes)} if args.soak_minutes else {}),
        **(extra_env or {}),
    }
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    why = None
    try:
        code = process.wait(timeout=args.timeout)
        if code:
            why = f"the {db} process exited with status {code}"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGABRT)  # faulthandler prints every thread's stack
        process.wait()
        why = f"the {db} process was still running after {args.timeout:g} s (hung)"
    except BaseException:
        # Ctrl-C or SIGTERM: the child is in a session of its own, so it would
        # run on (against a PgBouncer stopped meanwhile). It stops with us.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    elapsed = time.perf_counter() - started
    try:
        info = json.loads(results.read_text()) if results.stat().st_size else None
    finally:
        results.unlink(missing_ok=True)
    if info is None or why:
        info = info or {"database": db, "server": "", "rows": []}
        hung = "hung" in (why or "")
        title = why or f"the {db} process gave no results"
        info["rows"].append(_row(db, title, elapsed, unexpected=0 if hung else 1, hung=1 if hung else 0))
    return info, elapsed


COLUMNS = (
    ("scenario", lambda r: f"{r['key']} {r['title']}", "<"),
    ("database", lambda r: r["database"], "<"),
    ("requests", lambda r: r["requests"], ">"),
    ("injected faults", lambda r: r["injected_faults"], ">"),
    ("failed as expected", lambda r: r["failed_as_expected"], ">"),
    ("failed unexpectedly", lambda r: r["failed_unexpectedly"], ">"),
    ("hung", lambda r: r["hung"], ">"),
    ("leaked conns", lambda r: r["leaked_connections"], ">"),
    ("leaked tasks", lambda r: r["leaked_tasks"], ">"),
    ("broken invariants", lambda r: r["broken_invariants"], ">"),
    ("memory MB before→after", lambda r: f"{r['memory_before_mb']:.0f} → {r['memory_after_mb']:.0f}", ">"),
    (
        "loop lag ms (GC)",
        lambda r: f"{r['max_loop_lag_ms']:.0f} ({r['figures'].get('gc_max_pause_ms', 0):.0f})",
        ">",
    ),
    ("loop errors", lambda r: r["figures"].get("loop_errors", 0), ">"),
    ("objects +", lambda r: r["figures"].get("python_objects_added", ""), ">"),
    ("seconds", lambda r: f"{r['seconds']:.1f}", ">"),
)


def table(rows: list[dict]) -> str:
    """The results as a Markdown table (readable as it is in a terminal)."""
    cells = [[str(get(row)) for _, get, _ in COLUMNS] for row in rows]
    widths = [max([len(name)] + [len(c[i]) for c in cells]) for i, (name, _, _) in enumerate(COLUMNS)]
    lines = ["| " + " | ".join(name.ljust(w) for (name, _, _), w in zip(COLUMNS, widths, strict=True)) + " |"]
    rule = [
        "-" * (w - 1) + ":" if align == ">" else "-" * w
        for (_, _, align), w in zip(COLUMNS, widths, strict=True)
    ]
    lines.append("| " + " | ".join(rule) + " |")
    for cell in cells:
        parts = [
            c.rjust(w) if a == ">" else c.ljust(w)
            for c, w, (_, _, a) in zip(cell, widths, COLUMNS, strict=True)
        ]
        lines.append("| " + " | ".join(parts) + " |")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("django", "django-tandem", "psycopg", "mysqlclient", "greenlet", "httpx"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def _exit_on_sigterm(signum: int, frame) -> None:
    # As for Ctrl-C: unwind, so that the child and PgBouncer are stopped.
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.perf_counter()
    print(f"chaos: {'quick' if args.quick else 'full'} run on {', '.join(args.db)}", flush=True)
    infos, seconds = [], {}
    for db in args.db:
        info, seconds[db] = run_behind_pgbouncer(args) if db == "pgbouncer" else run_child(db, args)
        infos.append(info)
    rows = [row for info in infos for row in info["rows"]]
    total = time.perf_counter() - started
    ok = all(row["ok"] for row in rows) and bool(rows)

    print()
    print(table(rows))
    print()
    for row in rows:
        if row.get("skipped"):
            print(f"  {row['database']}: skipped: {row['skipped']}")
        problems = row["broken_what"] + ([] if row["ok"] else row["notes"])
        for problem in problems:
            print(f"  {row['key']} {row['database']}: {problem}")
        if args.verbose:
            for kind, count in row.get("expected_errors", {}).items():
                print(f"  {row['key']} {row['database']}: expected x{count}: {kind}")
    timings = ", ".join(f"{db} {s:.1f} s" for db, s in seconds.items())
    print(f"timings: {timings}; total {total:.1f} s")

    # A quick run (CI) keeps out of the tracked results: bench/results/logs/ is not committed.
    out = args.out or (RESULTS / "logs" / "chaos-quick.json" if args.quick else RESULTS / "chaos-latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "ok": ok,
        "versions": versions(),
        "servers": {info["database"]: info.get("server", "") for info in infos},
        "seconds": {**{db: round(s, 1) for db, s in seconds.items()}, "total": round(total, 1)},
        "results": rows,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    if not ok:
        print("chaos: FAILED (a must-be-0 column is not 0, or a database could not be run)")
        return 1
    skipped = sorted({row["database"] for row in rows if row.get("skipped")})
    print(f"chaos: the books balance{'; skipped: ' + ', '.join(skipped) if skipped else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
