"""Run Django's own test suite against tandem and compare with stock Django.

    python -m conformance --db sqlite --apps "basic queries"

For each database, the selected test apps run three times with Django's
``tests/runtests.py``: ``stock`` (Django's own backend), ``sync`` (tandem's
backend, plain sync code: must equal stock) and ``bridged`` (tandem's
backend, every test inside ``tandem.native`` on an event loop). The selected
apps that use two databases (``MIXED_APPS``) run twice more, with one alias on
each backend, as in a project that moves one alias at a time: ``mixed``
(``default`` on tandem's, ``other`` on Django's) and ``mixed-flip`` (the other
way round). A test that passes on stock and fails in another mode is a
regression, unless ``conformance/expected.py`` lists it; any regression makes
the exit status 1.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import django

from conformance import expected, progress, sessions, suite

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "conformance" / "results"
MODES = ("stock", "sync", "bridged", "mixed", "mixed-flip")
MIXED_MODES = ("mixed", "mixed-flip")  # one alias on tandem's backend, one on Django's
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
    "cache mail template_tests forms_tests model_forms model_formsets "
    # Django's test tools (query counting, undeclared databases, fixtures), which tandem's
    # tasks must honour as the test thread does; and the lookups tandem's fast lane serves.
    "test_utils get_object_or_404 proxy_models custom_pk timezones "
    # Two aliases, routers, cross-database relations: the app of the mixed modes.
    "multiple_database"
).split()
# The apps the mixed modes run (of those selected): the apps of Django's suite with test cases
# that use both aliases (databases = {"default", "other"} or "__all__"), multiple_database
# first; and async, whose a* calls must take the native path on a tandem alias only. Not cache
# (one such test case, and about 4 minutes of the suite's own sleeps per mode); --mixed-apps
# picks others.
MIXED_APPS = (
    "multiple_database test_utils backends prefetch_related queries fixtures_regress "
    "order_with_respect_to contenttypes_tests sites_tests auth_tests context_processors apps "
    "invalid_models_tests check_framework admin_checks test_runner migrations admin_views async"
).split()
FAILING = {"failed", "error", "unexpected_success", "missing", "timeout"}
PASSING = {"passed", "expected_failure"}
POLL = 1.0  # seconds between two looks at a running runtests.py
LOGS_KEPT = 20  # the logs of this many runs are kept, per Django version, database and mode
TEST_TIMEOUT = float(os.environ.get("TANDEM_CONFORMANCE_TEST_TIMEOUT") or 300)


@dataclass
class Run:
    """What one mode's ``runtests.py`` run gave: outcomes by test id, and whether it ended."""

    outcomes: dict[str, str]
    complete: bool
    stopped: str = ""  # why it did not end on its own, if it did not
    log: Path | None = None  # runtests.py's output: tracebacks, stacks of a stopped run
    apps: frozenset[str] | None = None  # the apps it ran, if not every selected app (mixed modes)


class TerminatedError(Exception):
    """The runner was told to stop (SIGTERM, SIGHUP): as Ctrl-C, its runs stop with it."""


STOPS = (KeyboardInterrupt, TerminatedError)


def _stop_on_signals() -> None:
    def stop(signum, frame):
        raise TerminatedError(signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)


def _die_with_parent() -> None:
    """In the child, before ``runtests.py`` starts: die if this runner dies (Linux).

    The one way of stopping the runner that it cannot catch is SIGKILL;
    ``PR_SET_PDEATHSIG`` has the kernel kill ``runtests.py`` then.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _kill_group(process: subprocess.Popen, first: int, grace: float = 10.0) -> None:
    """Send ``first`` to the run's process group, then SIGKILL to whatever is left.

    ``runtests.py`` runs in a session of its own (so that a signal for its
    group never reaches this runner); its ``--parallel`` workers are in that
    group too. Once they are all gone, the kernel has closed their database
    connections.
    """
    try:
        os.killpg(process.pid, first)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # workers may outlive the leader
    except ProcessLookupError:
        pass
    process.wait()


def _end_sessions(db: str, mode: str) -> None:
    """After a stop: end what the killed run still runs on the server (``conformance.sessions``)."""
    try:
        ended = sessions.end(db, mode)
    except Exception as exc:  # report, and go on stopping
        print(f"  {db}/{mode}: could not end its server sessions: {exc!r}", flush=True)
        return
    if ended:
        print(f"  {db}/{mode}: ended {ended} server session(s) the stopped run left running", flush=True)


def run_id() -> str:
    """This run's name in its files: when it started (UTC, so names sort by time), and its pid."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"


def run_mode(tests: Path, db: str, mode: str, apps: list[str], args, run: str | None = None) -> Run:
    """Run ``apps`` of Django's suite on ``db`` in ``mode``.

    The run's files in the cache's ``logs/`` carry its name (``run``, see
    ``run_id``): another run, even one going on at the same time, never
    truncates its log or reads or deletes its results. ``STEM.log`` links to
    the latest run's log; the files of the last ``LOGS_KEPT`` runs are kept.
    """
    logs = suite.cache_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stem = f"django-{django.get_version()}-{db}-{mode}"
    run = run or run_id()
    results, log, events = (logs / f"{stem}-{run}.{ext}" for ext in ("json", "log", "progress"))
    outcome = _run_mode(tests, db, mode, apps, args, results, log, events, latest=logs / f"{stem}.log")
    # The outcomes go into the report. (If the runner is stopped, they stay: what the run did.)
    results.unlink(missing_ok=True)
    events.unlink(missing_ok=True)
    runs = sorted({path.name.removeprefix(f"{stem}-").split(".")[0] for path in logs.glob(f"{stem}-[0-9]*")})
    for old in runs[:-LOGS_KEPT]:
        for path in logs.glob(f"{stem}-{old}.*"):
            path.unlink(missing_ok=True)
    return outcome


def _point(link: Path, target: Path) -> None:
    """Make ``link`` a symbolic link to ``target`` (same directory), replacing what is there."""
    new = link.with_name(f".{link.name}.{os.getpid()}")
    try:
        new.unlink(missing_ok=True)
        new.symlink_to(target.name)
        os.replace(new, link)
    except OSError:  # no symbolic links here: the run's own log is still named in the report
        pass


def _run_mode(tests, db, mode, apps, args, results: Path, log: Path, events: Path, latest: Path) -> Run:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "TANDEM_CONFORMANCE_DB": db,
        "TANDEM_CONFORMANCE_MODE": mode,
        "TANDEM_CONFORMANCE_RESULTS": str(results),
        progress.ENVIRON: str(events),
    }
    command = [sys.executable, "-X", "faulthandler", "runtests.py", "--settings=conformance.settings"]
    command += [f"--parallel={args.parallel}", "--noinput", *apps]
    started = time.monotonic()
    watch = progress.Reader(events)
    stopped = ""
    with open(log, "w") as out:
        _point(latest, log)
        process = subprocess.Popen(
            command,
            cwd=tests,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        try:
            while process.poll() is None:
                try:
                    process.wait(timeout=POLL)
                    break
                except subprocess.TimeoutExpired:
                    pass
                watch.poll()
                now = time.monotonic()
                if args.test_timeout and now - watch.last_event > args.test_timeout:
                    name = watch.current or (
                        f"after {watch.last_started}" if watch.last_started else "before the first test"
                    )
                    stopped = f"{name}: no progress for {args.test_timeout:.0f} s (--test-timeout)"
                    if watch.current:
                        progress.record(watch.outcomes, watch.current, "timeout")
                elif args.timeout and now - started > args.timeout:
                    stopped = f"the whole run took more than {args.timeout:.0f} s (--timeout)"
                if stopped:
                    # SIGABRT first: faulthandler writes every thread's stack to the log.
                    _kill_group(process, signal.SIGABRT)
                    _end_sessions(db, mode)
                    break
        except BaseException as exc:  # Ctrl-C, SIGTERM, SIGHUP, an error here: the run ends with us
            _kill_group(process, signal.SIGKILL, grace=0)
            _end_sessions(db, mode)
            if isinstance(exc, STOPS):  # what the run did goes into the report all the same
                watch.poll()
                stopped = f"the runner was stopped ({str(exc) or 'Ctrl-C'})"
                exc.run = Run(watch.outcomes, complete=False, stopped=stopped, log=log)
            raise
    watch.poll()
    seconds = time.monotonic() - started
    if stopped:
        print(f"  {db}/{mode}: STOPPED, {stopped}; stacks in {log}", flush=True)
        return Run(watch.outcomes, complete=False, stopped=stopped, log=log)
    if not results.exists():
        stopped = f"runtests.py exited {process.returncode}"
        print(f"  {db}/{mode}: {stopped} without results; see {log}")
        return Run(watch.outcomes, complete=False, stopped=stopped, log=log)
    outcomes = json.loads(results.read_text())
    print(f"  {db}/{mode}: {len(outcomes)} tests in {seconds:.0f} s (log: {log})", flush=True)
    return Run(outcomes, complete=True, log=log)


def app_of(test_id: str) -> str:
    """The test app a test id belongs to (``setUpClass (app.tests.X)`` too)."""
    if "(" in test_id:
        test_id = test_id[test_id.index("(") + 1 :]
    return test_id.split(".", 1)[0]


def compare(db: str, runs: dict[str, Run]) -> dict:
    """Per-app counts for each mode, regressions and expected failures.

    In a mode that was stopped (a test timed out, ``runtests.py`` died), the
    tests it never reached are counted under ``not_run`` rather than listed
    one by one; the stop itself is a regression.

    A mode that ran some of the apps only (the mixed modes, ``Run.apps``) is
    compared on those: its row of an app it did not run is absent.
    """
    stock = runs["stock"].outcomes
    table: dict[str, dict[str, Counter]] = {}
    regressions, known, fixed, not_run, stopped = [], [], [], {}, {}
    apps = {app_of(test_id) for run in runs.values() for test_id in run.outcomes}
    for app in sorted(apps | {app for run in runs.values() for app in run.apps or ()}):
        table[app] = {m: Counter() for m, run in runs.items() if run.apps is None or app in run.apps}
    for mode, run in runs.items():
        for test_id, outcome in run.outcomes.items():
            table[app_of(test_id)].setdefault(mode, Counter())[_column(outcome)] += 1
        if not run.complete:
            stopped[mode] = run.stopped
        if mode == "stock":
            continue
        for test_id, before in stock.items():
            if run.apps is not None and app_of(test_id) not in run.apps:
                continue
            after = run.outcomes.get(test_id, "missing")
            if after == "missing" and not run.complete:
                not_run[mode] = not_run.get(mode, 0) + 1
                continue
            entry = expected.expected(test_id, db, mode)
            if before in PASSING and after in FAILING:
                item = {"test": test_id, "mode": mode, "outcome": after, "log": str(run.log or "")}
                (known if entry else regressions).append(item)
            elif entry and after in PASSING:
                fixed.append({"test": test_id, "mode": mode})
    return {
        "apps": table,
        "regressions": regressions,
        "expected": known,
        "fixed": fixed,
        "stopped": stopped,
        "not_run": not_run,
        "logs": {mode: str(run.log or "") for mode, run in runs.items()},
    }


def _column(outcome: str) -> str:
    return {
        "expected_failure": "passed",
        "unexpected_success": "failed",
        "error": "errors",
        "timeout": "errors",
    }.get(outcome, outcome)


def print_report(db: str, report: dict) -> None:
    """The per-app table, then every regression by test id.

    A mode's cell of an app it did not run is ``-``; its total is over the apps it ran.
    """
    modes = [m for m in MODES if any(m in row for row in report["apps"].values())]
    header = f"{'app':24}" + "".join(f" | {m + ' p/f/e/s':>22}" for m in modes)
    print(f"\n{db}, Django {django.get_version()}\n{header}\n{'-' * len(header)}")
    totals = {m: Counter() for m in modes}
    for app in sorted(report["apps"]):
        row = report["apps"][app]
        cells = []
        for m in modes:
            totals[m].update(row.get(m, {}))
            cells.append(_cell(row[m]) if m in row else "-")
        print(f"{app:24}" + "".join(f" | {c:>22}" for c in cells))
    print(f"{'total':24}" + "".join(f" | {_cell(totals[m]):>22}" for m in modes))
    for item in report["expected"]:
        print(f"  expected failure ({item['mode']}): {item['test']}")
    for item in report["fixed"]:
        print(f"  listed as expected but passes ({item['mode']}): {item['test']} - update expected.py")
    for item in report["regressions"]:
        print(f"  REGRESSION ({item['mode']}, {item['outcome']}): {item['test']}")
    for mode, why in report["stopped"].items():
        left = f"; {report['not_run'][mode]} of stock's tests not run" if mode in report["not_run"] else ""
        print(f"  STOPPED ({mode}): {why}{left}")


def _cell(counts: Counter) -> str:
    return "/".join(str(counts[k]) for k in ("passed", "failed", "errors", "skipped"))


def write_report(path: Path, meta: dict, reports: dict, merge: bool) -> None:
    """Write the reports to ``path``; with ``merge``, over what it holds of other apps.

    A partial run (some apps, some databases) replaces, for each database it
    ran, the rows and the listed tests of the apps it ran, and keeps the
    rest: partial runs one after the other add up to one report.
    ``ran_at`` says when each app last ran, by database.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not merge:
        _write_report(path, meta, reports, merge)
        return
    # Merging reads the report, then replaces it: runs ending at the same time take turns.
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _write_report(path, meta, reports, merge)


def _write_report(path: Path, meta: dict, reports: dict, merge: bool) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    data = {**meta, "databases": {}}
    if merge and path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
        if old.get("django") == meta["django"]:
            data["databases"] = old.get("databases", {})
            data["apps"] = sorted({*old.get("apps", []), *meta["apps"]})
    for db, report in reports.items():
        ran = set(meta["apps"])
        entry = data["databases"].get(db, {})
        merged = {
            "apps": {app: row for app, row in entry.get("apps", {}).items() if app not in ran},
            "ran_at": {app: at for app, at in entry.get("ran_at", {}).items() if app not in ran},
        }
        for key in ("regressions", "expected", "fixed"):
            kept = [item for item in entry.get(key, []) if app_of(item["test"]) not in ran]
            merged[key] = kept + report[key]
        merged["apps"].update(report["apps"])
        merged["ran_at"].update(dict.fromkeys(ran, now))
        merged["stopped"] = report["stopped"]
        merged["not_run"] = report["not_run"]
        merged["logs"] = report["logs"]  # the latest run's; each listed test names its own
        data["databases"][db] = merged
    # Written beside, then renamed: a reader never sees half a report.
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, delete=False) as f:
        f.write(json.dumps(data, indent=1) + "\n")
    os.replace(f.name, path)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m conformance", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=os.environ.get("DB") or " ".join(DATABASES))
    parser.add_argument(
        "--apps",
        default=os.environ.get("APPS") or " ".join(APPS),
        help="apps of Django's suite, space-separated, or 'all': every app its runtests.py runs "
        "(default: the apps tandem's conformance covers)",
    )
    parser.add_argument(
        "--modes",
        default=os.environ.get("MODES") or " ".join(MODES),
        help=f"modes to run, stock included (default: {' '.join(MODES)}); the mixed modes run "
        "the selected apps that --mixed-apps names, and are left out when there are none",
    )
    parser.add_argument(
        "--mixed-apps",
        default=os.environ.get("MIXED_APPS") or " ".join(MIXED_APPS),
        help="of the selected apps, those the mixed modes run, space-separated, or 'all': every "
        "selected app (default: MIXED_APPS, or the apps of Django's suite that use two databases)",
    )
    parser.add_argument("--parallel", default="1", help="runtests.py --parallel (processes per mode)")
    parser.add_argument(
        "--test-timeout",
        type=float,
        default=TEST_TIMEOUT,
        help="seconds a test may run (no progress at all) before its run is stopped and the test "
        "named; 0: none (default: TANDEM_CONFORMANCE_TEST_TIMEOUT or 300)",
    )
    parser.add_argument(
        "--timeout", type=float, default=0, help="seconds per mode before giving up; 0: none (the default)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="write the reports here (default: conformance/results/django-VERSION.json after a "
        "full run; after a partial one, merged app by app into the cache's "
        "logs/django-VERSION.json)",
    )
    args = parser.parse_args(argv)

    dbs = args.db.split()
    modes = args.modes.split()
    if unknown := set(dbs) - set(DATABASES):
        parser.error(f"--db/DB: unknown database(s) {sorted(unknown)}; use {', '.join(DATABASES)}")
    if "stock" not in modes or not set(modes) <= set(MODES):
        parser.error(f"--modes: choose from {', '.join(MODES)}, stock included (the baseline)")
    if args.parallel != "1" and importlib.util.find_spec("tblib") is None:
        # Django's parallel runner pickles each failure with its traceback; without tblib the
        # first failure, in any mode, ends the whole runtests.py run.
        parser.error("--parallel above 1 needs tblib (pip install tblib), as Django's suite does")
    tests = suite.tests_dir()
    requested = args.apps.split()
    everything = "all" in requested
    if everything:
        apps = suite.all_apps(tests)
        print(f"conformance: all {len(apps)} apps of Django {django.get_version()}'s suite")
    else:
        apps = [a for a in requested if (tests / a).is_dir()]
        if absent := [a for a in requested if a not in apps]:
            print(f"conformance: not in Django {django.get_version()}'s suite, left out: {' '.join(absent)}")

    mixed_requested = args.mixed_apps.split()
    mixed_apps = apps if "all" in mixed_requested else [a for a in apps if a in mixed_requested]
    if mixed := [m for m in modes if m in MIXED_MODES]:
        if mixed_apps:
            print(f"conformance: {' and '.join(mixed)} run {' '.join(mixed_apps)}")
        else:
            print(f"conformance: {' and '.join(mixed)} left out: no selected app in MIXED_APPS")
            modes = [m for m in modes if m not in MIXED_MODES]

    _stop_on_signals()
    reports, status, run, stop = {}, 0, run_id(), None
    for db in dbs:
        runs = {}
        for mode in modes:
            try:
                if mode in MIXED_MODES:
                    runs[mode] = run_mode(tests, db, mode, mixed_apps, args, run)
                    runs[mode].apps = frozenset(mixed_apps)
                else:
                    runs[mode] = run_mode(tests, db, mode, apps, args, run)
            except STOPS as exc:  # stopped: report what ran, then stop
                stop = exc
                if getattr(exc, "run", None):
                    runs[mode] = exc.run
                    if mode in MIXED_MODES:
                        runs[mode].apps = frozenset(mixed_apps)
                break
        if "stock" not in runs:  # stopped before it had a baseline
            break
        reports[db] = report = compare(db, runs)
        print_report(db, report)
        if report["regressions"] or report["stopped"]:
            status = 1
        if stop:
            break
    if stop and not reports:
        raise stop
    # A full run is the default selection (or more) everywhere: its report is the one the tables of
    # docs/conformance.md come from. `--apps all` is not one: it adds up in the cache as partial
    # runs do, and conformance/results/ keeps the default selection's.
    full = (
        not everything
        and not stop
        and set(dbs) == set(DATABASES)
        and set(requested) >= set(APPS)
        and set(modes) == set(MODES)
        and set(mixed_requested) == set(MIXED_APPS)
    )
    where = RESULTS if full else suite.cache_dir() / "logs"
    path = args.json or where / f"django-{django.get_version()}.json"
    meta = {"django": django.get_version(), "python": platform.python_version(), "apps": apps}
    if full:  # conformance/results/ is kept in the repository: no paths of this machine
        for report in reports.values():
            report.pop("logs")
            for item in report["regressions"] + report["expected"]:
                item.pop("log")
    selection = "all" if everything else " ".join(apps)
    command = "make conformance" if full else f"make conformance DB='{args.db}' APPS='{selection}'"
    if not full and set(modes) != set(MODES):
        command += f" MODES='{' '.join(modes)}'"
    if not full and mixed and set(mixed_requested) != set(MIXED_APPS):
        command += f" MIXED_APPS='{args.mixed_apps}'"
    write_report(path, {**meta, "command": command}, reports, merge=not full and args.json is None)
    print(f"\nreport: {path}")
    if stop:
        raise stop
    print("\nconformance:", "REGRESSIONS (see above)" if status else "no regressions")
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (KeyboardInterrupt, TerminatedError) as stop:
        print(f"\nconformance: stopped ({str(stop) or 'Ctrl-C'}); its runtests.py processes were killed")
        sys.exit(130)
