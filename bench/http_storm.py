"""Connection storms: does a server come back to its old self after 1000-connection bursts?

    python bench/http_storm.py                    # tandem, event view: about 1 minute
    python bench/http_storm.py --server stock-async --view me-event
    python bench/http_storm.py --duration 3 --storm-duration 3   # a quick look

One server of ``bench/http.py`` (same database, seeding, worker processes and
pool; ``--server``, default ``tandem``), one view (``--view``: ``event`` or
``me-event``). After a short warm-up: ``--connections`` (50) for ``--duration``
seconds (10), ``--storms`` (3) wrk runs of ``--storm-connections`` (1000) for
``--storm-duration`` seconds (10) each, in a row, ``--settle`` seconds (2) of
quiet, then the ``--connections`` run again. Reported: every run's requests/s,
latency and errors, the resident memory of the server's process tree before
(after the first run) and after (after the last), the server's CPU seconds
during the quiet (work left over from requests whose clients are gone), and the
second run's requests/s as a ratio to the first's: 1.00x is a server the storms
left as it was. Writes ``bench/results/<output>.json`` (default ``http-storm-latest``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# As in bench/http.py: run as a script, bench/ would come first on sys.path and bench/http.py would
# shadow the standard library's http package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass

from bench.http import (
    RESULTS,
    SCENARIOS,
    SESSION_COOKIE,
    _raise_fd_limit,
    free_port,
    load,
    parse_wrk,
    prepare_database,
    probe,
    servers,
    start,
    stop,
    tree_rss,
    wait_for,
)


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            # Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    """One wrk run of the check, and the server's memory right after it."""

    phase: str
    connections: int
    duration_s: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    peak_db_connections: int
    peak_rss_mb: float
    rss_after_mb: float


def main() -> None:
    """Start the server, run the phases, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="tandem", help="a server of bench/http.py")
    parser.add_argument("--view", default="event", choices=("event", "me-event"))
    parser.add_argument("--connections", type=int, default=50, help="the before and after runs")
    parser.add_argument("--duration", type=int, default=10, help="seconds of the before and after runs")
    parser.add_argument("--storms", type=int, default=3)
    parser.add_argument("--storm-connections", type=int, default=1000)
    parser.add_argument("--storm-duration", type=int, default=10, help="seconds per storm")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds of quiet before the after run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before the before run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--output", default="http-storm-latest")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    _raise_fd_limit()
    scenario = next(s for s in SCENARIOS if s.view == args.view)
    port = free_port()
    # The event views never call the upstream: no stub is started.
    catalogue = servers(args.workers, args.pool, port, "http://127.0.0.1:9/quote", scenario.middleware)
    if args.server not in catalogue:
        raise SystemExit(f"--server: unknown {args.server!r}; use {', '.join(catalogue)}")
    server = catalogue[args.server]
    if args.view not in server.paths:
        raise SystemExit(f"{args.server} has no {args.view} view: {server.not_applicable.get(args.view)}")
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    cookie = prepare_database()
    headers = [f"Cookie: {SESSION_COOKIE}={cookie}"] if args.view == "me-event" else []
    log = logs / f"storm-{args.server}.log"
    url = f"http://127.0.0.1:{port}{server.paths[args.view]}"
    process = start(server.command, server.cwd, server.env, log)
    phases: list[Phase] = []

    def run(name: str, connections: int, duration: int) -> Phase:
        output, peaks = load(url, connections, duration, process.pid, headers)
        with open(logs / "wrk.log", "a") as raw:
            raw.write(f"== storm check {args.server} {args.view} {name} {connections}\n{output}\n")
        rps, p50, p99, errors = parse_wrk(output)
        phase = Phase(
            name,
            connections,
            duration,
            rps,
            p50,
            p99,
            errors,
            peaks.connections,
            peaks.rss / 2**20,
            tree_rss(process.pid) / 2**20,
        )
        print(
            f"{name:8} {connections:5} conns {duration:3} s: {rps:8.0f} req/s p50 {p50:7.1f} ms "
            f"p99 {p99:8.1f} ms errors {errors:6} db {peaks.connections:3} "
            f"rss peak {phase.peak_rss_mb:5.0f} MB, after {phase.rss_after_mb:5.0f} MB",
            flush=True,
        )
        return phase

    try:
        wait_for(f"http://127.0.0.1:{port}{server.paths['event']}", process, log)
        probe(url, headers, log)
        rss_started = tree_rss(process.pid) / 2**20
        if args.warmup:
            load(url, args.connections, args.warmup, process.pid, headers)
        phases.append(run("before", args.connections, args.duration))
        for n in range(args.storms):
            phases.append(run(f"storm {n + 1}", args.storm_connections, args.storm_duration))
        cpu = tree_cpu(process.pid)
        time.sleep(args.settle)
        settle_cpu = tree_cpu(process.pid) - cpu  # work left over from the storms' abandoned requests
        rss_settled = tree_rss(process.pid) / 2**20
        phases.append(run("after", args.connections, args.duration))
    finally:
        stop(process)

    before, after = phases[0], phases[-1]
    ratio = after.requests_per_s / before.requests_per_s if before.requests_per_s else float("nan")
    summary = {
        "rss_started_mb": rss_started,
        "rss_before_mb": before.rss_after_mb,
        "rss_after_storms_settled_mb": rss_settled,
        "rss_after_mb": after.rss_after_mb,
        "rss_growth_mb": after.rss_after_mb - before.rss_after_mb,
        "requests_per_s_before": before.requests_per_s,
        "requests_per_s_after": after.requests_per_s,
        "after_over_before": ratio,
        "server_cpu_s_during_settle": settle_cpu,
    }
    print(f"\n{args.server}, {scenario.name}:\n")
    columns = ("phase", "conns", "s", "req/s", "p50 ms", "p99 ms", "errors", "peak DB conns", "peak RSS MB")
    print("| " + " | ".join(columns) + " | RSS MB after |")
    print("|---|" + "---:|" * len(columns))
    for p in phases:
        print(
            f"| {p.phase} | {p.connections} | {p.duration_s} | {p.requests_per_s:.0f} | {p.p50_ms:.1f} "
            f"| {p.p99_ms:.1f} | {p.errors} | {p.peak_db_connections} | {p.peak_rss_mb:.0f} "
            f"| {p.rss_after_mb:.0f} |"
        )
    print(
        f"\nRSS (process tree): {rss_started:.0f} MB at start, {before.rss_after_mb:.0f} MB before "
        f"the storms, {rss_settled:.0f} MB after them, {after.rss_after_mb:.0f} MB at the end "
        f"({summary['rss_growth_mb']:+.0f} MB). Server CPU in the {args.settle:g} s after the storms: "
        f"{settle_cpu:.1f} s.\n"
        f"{args.connections} connections after/before the storms: "
        f"{after.requests_per_s:.0f} / {before.requests_per_s:.0f} req/s = {ratio:.2f}x"
    )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{args.output}.json"
    document = {
        "command": "python bench/http_storm.py " + " ".join(sys.argv[1:]),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "server": args.server,
        "view": args.view,
        "scenario": asdict(scenario),
        "workers": args.workers,
        "pool_per_worker": args.pool,
        "settle_s": args.settle,
        "warmup_s": args.warmup,
        "summary": summary,
        "phases": [asdict(p) for p in phases],
    }
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
