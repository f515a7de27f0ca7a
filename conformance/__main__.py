"""Run Django's own test suite against tandem and compare with stock Django.

    python -m conformance --db sqlite --apps "basic queries"

For each database, the selected test apps run three times with Django's
``tests/runtests.py``: ``stock`` (Django's own backend), ``sync`` (tandem's
backend, plain sync code: must equal stock) and ``bridged`` (tandem's
backend, every test inside ``tandem.native`` on an event loop). A test that
passes on stock and fails in another mode is a regression, unless
``conformance/expected.py`` lists it; any regression makes the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import django

from conformance import expected, suite

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "conformance" / "results"
MODES = ("stock", "sync", "bridged")
DATABASES = ("postgresql", "sqlite", "mysql")
# The apps of Django's suite that exercise the ORM and its async API, the request path, the
# cache, email, templates and forms.
APPS = (
    "basic queries lookup expressions expressions_case aggregation aggregation_regress annotations "
    "select_related select_related_regress prefetch_related many_to_one many_to_many one_to_one "
    "generic_relations delete delete_regress transactions transaction_hooks select_for_update "
    "get_or_create update update_only_fields bulk_create model_inheritance defer defer_regress "
    "custom_managers raw_query db_functions model_fields signals pagination async async_queryset "
    "backends ordering distinct_on_fields null_fk queryset_pickle "
    # Django's request path, which tandem runs on the loop (docs/concepts/request-path.md).
    "handlers middleware middleware_exceptions asgi sessions_tests auth_tests messages_tests "
    "csrf_tests decorators test_client dispatch "
    # Django's cache, email, templates and forms, which tandem runs on the loop too: the Redis
    # cache and SMTP email tests run against tandem's backends in sync/bridged mode
    # (conformance/backends.py).
    "cache mail template_tests forms_tests model_forms model_formsets"
).split()
FAILING = {"failed", "error", "unexpected_success", "missing"}
PASSING = {"passed", "expected_failure"}


def run_mode(tests: Path, db: str, mode: str, apps: list[str], args) -> dict[str, str]:
    """Run ``apps`` of Django's suite on ``db`` in ``mode``: outcome by test id."""
    logs = suite.cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stem = f"django-{django.get_version()}-{db}-{mode}"
    results, log = logs / f"{stem}.json", logs / f"{stem}.log"
    results.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "TANDEM_CONFORMANCE_DB": db,
        "TANDEM_CONFORMANCE_MODE": mode,
        "TANDEM_CONFORMANCE_RESULTS": str(results),
    }
    command = [sys.executable, "-X", "faulthandler", "runtests.py", "--settings=conformance.settings"]
    command += [f"--parallel={args.parallel}", "--noinput", *apps]
    started = time.monotonic()
    with open(log, "w") as out:
        process = subprocess.Popen(
            command, cwd=tests, env=env, stdout=out, stderr=out, start_new_session=True
        )
        try:
            process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGABRT)  # faulthandler writes every thread's stack to the log
            process.wait()
            print(f"  {db}/{mode}: timed out after {args.timeout} s; stacks in {log}")
    seconds = time.monotonic() - started
    if not results.exists():
        print(f"  {db}/{mode}: runtests.py exited {process.returncode} without results; see {log}")
        return {}
    outcomes = json.loads(results.read_text())
    print(f"  {db}/{mode}: {len(outcomes)} tests in {seconds:.0f} s (log: {log})", flush=True)
    return outcomes


def app_of(test_id: str) -> str:
    """The test app a test id belongs to (``setUpClass (app.tests.X)`` too)."""
    if "(" in test_id:
        test_id = test_id[test_id.index("(") + 1 :]
    return test_id.split(".", 1)[0]


def compare(db: str, runs: dict[str, dict[str, str]]) -> dict:
    """Per-app counts for each mode, regressions and expected failures."""
    stock = runs["stock"]
    table: dict[str, dict[str, Counter]] = {}
    regressions, known, fixed = [], [], []
    for mode, outcomes in runs.items():
        for test_id, outcome in outcomes.items():
            table.setdefault(app_of(test_id), {m: Counter() for m in runs})[mode][_column(outcome)] += 1
        if mode == "stock":
            continue
        for test_id, before in stock.items():
            after = outcomes.get(test_id, "missing")
            entry = expected.expected(test_id, db, mode)
            if before in PASSING and after in FAILING:
                (known if entry else regressions).append({"test": test_id, "mode": mode, "outcome": after})
            elif entry and after in PASSING:
                fixed.append({"test": test_id, "mode": mode})
    return {"apps": table, "regressions": regressions, "expected": known, "fixed": fixed}


def _column(outcome: str) -> str:
    return {"expected_failure": "passed", "unexpected_success": "failed", "error": "errors"}.get(
        outcome, outcome
    )


def print_report(db: str, report: dict) -> None:
    """The per-app table, then every regression by test id."""
    modes = [m for m in MODES if any(m in row for row in report["apps"].values())]
    header = f"{'app':24}" + "".join(f" | {m + ' p/f/e/s':>20}" for m in modes)
    print(f"\n{db}, Django {django.get_version()}\n{header}\n{'-' * len(header)}")
    totals = {m: Counter() for m in modes}
    for app in sorted(report["apps"]):
        row = report["apps"][app]
        cells = []
        for m in modes:
            totals[m].update(row[m])
            cells.append(_cell(row[m]))
        print(f"{app:24}" + "".join(f" | {c:>20}" for c in cells))
    print(f"{'total':24}" + "".join(f" | {_cell(totals[m]):>20}" for m in modes))
    for item in report["expected"]:
        print(f"  expected failure ({item['mode']}): {item['test']}")
    for item in report["fixed"]:
        print(f"  listed as expected but passes ({item['mode']}): {item['test']} - update expected.py")
    for item in report["regressions"]:
        print(f"  REGRESSION ({item['mode']}, {item['outcome']}): {item['test']}")


def _cell(counts: Counter) -> str:
    return "/".join(str(counts[k]) for k in ("passed", "failed", "errors", "skipped"))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=os.environ.get("DB") or " ".join(DATABASES))
    parser.add_argument("--apps", default=os.environ.get("APPS") or " ".join(APPS))
    parser.add_argument("--modes", default=" ".join(MODES))
    parser.add_argument("--parallel", default="1", help="runtests.py --parallel (processes per mode)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per mode before giving up")
    parser.add_argument(
        "--json",
        type=Path,
        help="write the reports here (default: conformance/results/django-VERSION.json after a "
        "full run, the cache's logs/ directory after a partial one)",
    )
    args = parser.parse_args(argv)

    dbs = args.db.split()
    modes = args.modes.split()
    if unknown := set(dbs) - set(DATABASES):
        parser.error(f"--db/DB: unknown database(s) {sorted(unknown)}; use {', '.join(DATABASES)}")
    if "stock" not in modes or not set(modes) <= set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}, stock included (the baseline)")
    tests = suite.tests_dir()
    apps = [a for a in args.apps.split() if (tests / a).is_dir()]
    if absent := [a for a in args.apps.split() if a not in apps]:
        print(f"conformance: not in Django {django.get_version()}'s suite, left out: {' '.join(absent)}")

    reports, status = {}, 0
    for db in dbs:
        runs = {mode: run_mode(tests, db, mode, apps, args) for mode in modes}
        reports[db] = report = compare(db, runs)
        print_report(db, report)
        if report["regressions"] or not all(runs.values()):
            status = 1
    full = set(dbs) == set(DATABASES) and set(args.apps.split()) >= set(APPS) and set(modes) == set(MODES)
    where = RESULTS if full else suite.cache_dir() / "logs"
    path = args.json or where / f"django-{django.get_version()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"django": django.get_version(), "python": platform.python_version(), "apps": apps}
    command = "make conformance" if full else f"make conformance DB='{args.db}' APPS='{' '.join(apps)}'"
    path.write_text(json.dumps({**meta, "command": command, "databases": reports}, indent=1) + "\n")
    print(f"\nreport: {path}")
    print("\nconformance:", "REGRESSIONS (see above)" if status else "no regressions")
    return status


if __name__ == "__main__":
    sys.exit(main())
