"""End-to-end HTTP benchmark: the onsale views under wrk, tandem against the alternatives.

    python bench/http.py                      # everything (about 30 minutes per repeat)
    python bench/http.py --servers tandem,stock-async --connections 200 --duration 5
    python bench/http.py --servers tandem,stock-async,sync-gthread --scenarios me-event

Every server runs on loopback with the same number of worker processes and
the same database pool size per process, against the same PostgreSQL
database (``tandem_bench``, recreated, migrated and seeded by this script):

- ``tandem``: the demo under uvicorn, tandem's PostgreSQL backend;
- ``tandem-no-fast-lane``: the same with ``TANDEM_FAST_LANE = False``
  (the ORM fast lane off);
- ``stock-async``: the same async views on Django's stock backend with its
  psycopg_pool (``sync_to_async`` under the hood);
- ``sync-gthread``: sync twins of the views, stock backend and pool, under
  gunicorn's threaded workers;
- ``tandem-native-sync``: the demo under uvicorn on tandem with
  ``TANDEM_SYNC_VIEWS=native``, serving the sync twins (not the
  dashboard: its sync twin's blocking upstream call has no place on the
  loop);
- ``django-async-backend``, ``fastapi-sqlalchemy``, ``tortoise``: the same
  queries in what a user might pick instead (``bench/http_apps/``).

Scenarios, each at every ``--connections``: ``event`` (one event by primary
key), ``dashboard`` (three aggregates and one call to the upstream stub, in
parallel) with upstream latency 50 ms and 1 s, and ``me-event``: the event
for a logged-in user, with Django's ``startproject`` middleware
(``TANDEM_DEMO_MIDDLEWARE=startproject``: a session read and a user lookup
before the event; Django servers of the demo only), and ``page``: a whole
HTML page for the logged-in user (startproject middleware, one cache read
from Redis, 20 events rendered by a Django template; tandem's Redis cache for
tandem, Django's for the others). Every server calls the
upstream with the same small client (``example/shop/httpget.py``: one request
per connection). Reported per run: requests/s (and its ratio to stock async
and to sync gthread), p50 and p99 latency, errors (non-2xx and socket
errors), peak database connections (``pg_stat_activity``) and peak RSS of the
server's processes. With ``--repeat N`` every figure is the median of N runs.
Writes ``bench/results/http-latest.json`` and ``bench/results/http-latest.png``.
``bench/http_storm.py`` uses this module's machinery for its storm check.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory would come first on sys.path and
# this module would shadow the standard library's http package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "example"
RESULTS = ROOT / "bench" / "results"
DSN = os.environ.get("TANDEM_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/tandem_bench")
UPSTREAM_PORTS = {0.05: 8091, 1.0: 8092}
GTHREAD_THREADS = 50
# The session cookie (``manage.py bench_session`` makes the session) that me-event sends.
SESSION_COOKIE = "sessionid"
BASELINES = ("stock-async", "sync-gthread")


@dataclass(frozen=True)
class Scenario:
    """A view under load, and the configuration its server is started with."""

    key: str  # how --scenarios names it
    name: str  # how the report names it
    view: str  # a key of Server.paths
    latency: float  # the upstream stub's latency in seconds
    middleware: str = "demo"  # TANDEM_DEMO_MIDDLEWARE for the demo's servers


SCENARIOS = (
    Scenario("event", "event", "event", 0.05),
    Scenario("dashboard-50ms", "dashboard (upstream 50 ms)", "dashboard", 0.05),
    Scenario("dashboard-1s", "dashboard (upstream 1000 ms)", "dashboard", 1.0),
    Scenario("me-event", "me-event (startproject, logged in)", "me-event", 0.05, "startproject"),
    Scenario("page", "page (logged in, cache read, 20-row template)", "page", 0.05, "startproject"),
)
ASYNC_PATHS = {
    "event": "/bench/event/1",
    "dashboard": "/bench/dashboard",
    "me-event": "/bench/me/event/1",
    "page": "/bench/page",
}
SYNC_PATHS = {
    "event": "/bench/sync/event/1",
    "dashboard": "/bench/sync/dashboard",
    "me-event": "/bench/sync/me/event/1",
    "page": "/bench/sync/page",
}
LOGGED_IN_VIEWS = ("me-event", "page")
NO_DJANGO_AUTH = "no Django sessions or auth"


@dataclass
class Server:
    """How to start one server, which path serves each view, and why the others are n/a."""

    name: str
    command: list[str]
    cwd: Path
    env: dict[str, str]
    paths: dict[str, str] = field(default_factory=lambda: dict(ASYNC_PATHS))
    not_applicable: dict[str, str] = field(default_factory=dict)  # view -> why

    def __post_init__(self) -> None:
        for view in self.not_applicable:
            self.paths.pop(view, None)


def servers(workers: int, pool: int, port: int, upstream: str, middleware: str = "demo") -> dict[str, Server]:
    """Every server, configured alike: ``workers`` processes, ``pool`` connections each."""
    python = sys.executable
    parts = urlsplit(DSN)
    demo_env = {
        "TANDEM_DEMO_DB": "postgresql",
        "TANDEM_POSTGRES_URL": DSN,
        "TANDEM_DEMO_POOL": str(pool),
        "TANDEM_DEMO_UPSTREAM": upstream,
        "TANDEM_DEMO_DEBUG": "0",
        "TANDEM_DEMO_MIDDLEWARE": middleware,
    }
    bench_env = {"TANDEM_BENCH_DSN": DSN, "TANDEM_BENCH_POOL": str(pool), "TANDEM_BENCH_UPSTREAM": upstream}
    # uvicorn's command line with TCP_NODELAY restored for --workers > 1 (bench/http_apps/serve.py).
    uvicorn = [
        python,
        "-m",
        "bench.http_apps.serve",
        "--app-dir",
        ".",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    uvicorn += ["--workers", str(workers), "--log-level", "warning", "--no-access-log", "--backlog", "4096"]
    assert parts.hostname  # a TCP DSN: pg_stat_activity is read over it too
    return {
        "tandem": Server("tandem", [*uvicorn, "demo.asgi:application"], EXAMPLE, demo_env),
        "tandem-no-fast-lane": Server(
            "tandem-no-fast-lane",
            [*uvicorn, "demo.asgi:application"],
            EXAMPLE,
            {**demo_env, "TANDEM_DEMO_FAST_LANE": "0"},
        ),
        "stock-async": Server(
            "stock-async",
            [*uvicorn, "demo.asgi:application"],
            EXAMPLE,
            {**demo_env, "TANDEM_DEMO_BACKEND": "stock"},
        ),
        "sync-gthread": Server(
            "sync-gthread",
            [
                *(python, "-m", "gunicorn", "demo.wsgi:application", "-k", "gthread"),
                *("--workers", str(workers), "--threads", str(GTHREAD_THREADS)),
                *("--bind", f"127.0.0.1:{port}", "--backlog", "4096", "--log-level", "warning"),
            ],
            EXAMPLE,
            {**demo_env, "TANDEM_DEMO_BACKEND": "stock"},
            dict(SYNC_PATHS),
        ),
        "tandem-native-sync": Server(
            "tandem-native-sync",
            [*uvicorn, "demo.asgi:application"],
            EXAMPLE,
            {**demo_env, "TANDEM_DEMO_SYNC_VIEWS": "native"},
            {view: SYNC_PATHS[view] for view in ("event", "me-event", "page")},
            {"dashboard": "the sync dashboard's blocking upstream call would stall the loop"},
        ),
        "django-async-backend": Server(
            "django-async-backend",
            [*uvicorn, "bench.http_apps.django_async_backend_site.asgi:application"],
            ROOT,
            bench_env,
            not_applicable=dict.fromkeys(
                LOGGED_IN_VIEWS,
                "a Django project of its own (its ENGINE, models with async_objects), "
                "not the demo's; contrib.auth and sessions would query through stock Django's "
                "sync_to_async, not the package's async layer",
            ),
        ),
        "fastapi-sqlalchemy": Server(
            "fastapi-sqlalchemy",
            [*uvicorn, "bench.http_apps.fastapi_sqlalchemy:app"],
            ROOT,
            bench_env,
            not_applicable=dict.fromkeys(LOGGED_IN_VIEWS, NO_DJANGO_AUTH),
        ),
        "tortoise": Server(
            "tortoise",
            [*uvicorn, "bench.http_apps.tortoise_app:app"],
            ROOT,
            bench_env,
            not_applicable=dict.fromkeys(LOGGED_IN_VIEWS, NO_DJANGO_AUTH),
        ),
    }


# -- processes -------------------------------------------------------------------------------------


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


def start(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start ``command`` in its own process group, output to ``log``."""
    out = open(log, "w")  # the child keeps it; closed when we exit
    return subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{EXAMPLE}", **env},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_raise_fd_limit,
    )


def stop(process: subprocess.Popen) -> None:
    """Stop a process group: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    """Poll ``url`` until it answers 200, or fail with the server's log."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up; log {log}:\n{log.read_text()[-3000:]}")


def probe(url: str, headers: Sequence[str], log: Path) -> None:
    """One GET of ``url`` with ``headers`` (``Name: value``): it must answer 200, or we stop here."""
    import httpx

    response = httpx.get(url, headers=[tuple(h.split(": ", 1)) for h in headers], timeout=30)
    if response.status_code != 200:
        raise SystemExit(
            f"{url} answered {response.status_code}: {response.text[:500]}\n"
            f"log {log}:\n{log.read_text()[-3000:]}"
        )


def tree_rss(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, in bytes."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, TypeError):
            continue
    return total


@dataclass
class Peaks:
    """Peak database connections and server memory, sampled every 100 ms."""

    connections: int = 0
    rss: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def watch(self, pid: int) -> threading.Thread:
        """Sample in a thread until ``stop()``."""
        import psycopg

        def sample() -> None:
            with psycopg.connect(DSN, autocommit=True) as conn:
                query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                name = urlsplit(DSN).path.lstrip("/")
                while not self._stop.wait(0.1):
                    (count,) = conn.execute(query, [name]).fetchone()
                    self.connections = max(self.connections, count)
                    self.rss = max(self.rss, tree_rss(pid))

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()


# -- load -------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One wrk run's figures."""

    server: str
    scenario: str
    connections: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    peak_db_connections: int
    peak_rss_mb: float


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(output: str) -> tuple[float, float, float, int]:
    """Requests/s, p50 ms, p99 ms and errors from ``wrk --latency`` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])
    percentile = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s|m))\s*$", output, re.M))

    def latency(key: str) -> float:
        if key not in percentile:
            return float("nan")
        value, unit = re.match(r"([\d.]+)(us|ms|s|m)", percentile[key]).groups()
        return _ms(value, unit)

    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return rps, latency("50"), latency("99"), errors + (int(non_2xx[1]) if non_2xx else 0)


def load(
    url: str, connections: int, duration: int, pid: int, headers: Sequence[str] = ()
) -> tuple[str, Peaks]:
    """Run wrk on ``url`` with ``headers`` (``Name: value``); its output and the peaks seen meanwhile."""
    peaks = Peaks()
    watcher = peaks.watch(pid)
    try:
        command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "30s"]
        command += [arg for header in headers for arg in ("-H", header)] + [url]
        output = subprocess.run(
            command, capture_output=True, text=True, check=True, preexec_fn=_raise_fd_limit
        ).stdout
    finally:
        peaks.stop()
        watcher.join()
    return output, peaks


# -- the database -----------------------------------------------------------------------------------


def prepare_database() -> str:
    """Recreate, migrate and seed ``tandem_bench`` with the demo's schema and data.

    Returns the value of a session cookie logged in as user ``bench``, for me-event.
    """
    import psycopg

    parts = urlsplit(DSN)
    name = parts.path.lstrip("/")
    admin = DSN.replace(f"/{name}", "/postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "TANDEM_DEMO_DB": "postgresql", "TANDEM_POSTGRES_URL": DSN}
    for command in (["migrate", "--noinput", "-v0"], ["seed"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=EXAMPLE, env=env, check=True)
    with psycopg.connect(DSN, autocommit=True) as conn:  # some orders, so the aggregates aggregate
        conn.execute(
            "INSERT INTO shop_order (ticket_type_id, email, quantity, created_at) "
            "SELECT id, 'buyer' || g || '@example.com', 1 + g % 3, now() "
            "FROM shop_tickettype, generate_series(1, 20) AS g"
        )
    # User bench and a session for it, made with the settings the me-event servers run with.
    session = subprocess.run(
        [sys.executable, "manage.py", "bench_session"],
        cwd=EXAMPLE,
        env={**env, "TANDEM_DEMO_MIDDLEWARE": "startproject"},
        check=True,
        capture_output=True,
        text=True,
    )
    return session.stdout.strip()


# -- reporting --------------------------------------------------------------------------------------


def median_run(runs: list[Run]) -> Run:
    """A run whose figures are the medians of ``runs`` (errors: the maximum)."""
    first = runs[0]
    med = lambda attr: statistics.median(getattr(r, attr) for r in runs)  # noqa: E731
    return Run(
        first.server,
        first.scenario,
        first.connections,
        med("requests_per_s"),
        med("p50_ms"),
        med("p99_ms"),
        max(r.errors for r in runs),
        max(r.peak_db_connections for r in runs),
        med("peak_rss_mb"),
    )


@dataclass
class NotApplicable:
    """A server that does not run a scenario, and why."""

    server: str
    scenario: str
    reason: str


def table(
    runs: list[Run],
    skipped: Sequence[NotApplicable] = (),
    connections: Sequence[int] = (),
    order: Sequence[str] = (),
) -> str:
    """The results as a Markdown table, requests/s also as ratios to the ``BASELINES``.

    Servers in ``skipped`` get an n/a row per scenario and connection count; rows are sorted by
    scenario, connections, then the position of the server in ``order``.
    """
    base = {(r.server, r.scenario, r.connections): r.requests_per_s for r in runs if r.server in BASELINES}
    rows = []
    for r in runs:
        ratios = []
        for baseline in BASELINES:
            baseline_rps = base.get((baseline, r.scenario, r.connections))
            ratios.append(f"{r.requests_per_s / baseline_rps:.2f}x" if baseline_rps else "n/a")
        rows.append(
            (
                (r.scenario, r.connections, r.server),
                f"| {r.scenario} | {r.connections} | {r.server} | {r.requests_per_s:.0f} | {ratios[0]} "
                f"| {ratios[1]} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} | {r.peak_db_connections} "
                f"| {r.peak_rss_mb:.0f} |",
            )
        )
    for na in skipped:
        for conns in connections:
            line = f"| {na.scenario} | {conns} | {na.server} | n/a |" + " |" * 7
            rows.append(((na.scenario, conns, na.server), line))
    rank = {name: i for i, name in enumerate(order)}
    rows.sort(key=lambda row: (row[0][0], row[0][1], rank.get(row[0][2], len(rank))))
    lines = [
        "| scenario | conns | server | req/s | vs stock async | vs sync gthread | p50 ms | p99 ms | errors "
        "| peak DB conns | peak RSS MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(line for _, line in rows),
    ]
    if skipped:
        lines.append("")
        lines += [f"n/a: {na.server}, {na.scenario}: {na.reason}." for na in skipped]
    return "\n".join(lines)


def chart(runs: list[Run], path: Path) -> None:
    """Requests/s per server, one panel per scenario, grouped by connections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(r.scenario for r in runs))
    names = list(dict.fromkeys(r.server for r in runs))
    conns = sorted({r.connections for r in runs})
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.5 * len(scenarios), 4.5), squeeze=False)
    width = 0.8 / len(names)
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        for i, name in enumerate(names):
            values = [
                next(
                    (
                        r.requests_per_s
                        for r in runs
                        if (r.server, r.scenario, r.connections) == (name, scenario, c)
                    ),
                    0,
                )
                for c in conns
            ]
            ax.bar([x + i * width for x in range(len(conns))], values, width, label=name)
        ax.set_xticks(
            [x + width * (len(names) - 1) / 2 for x in range(len(conns))], [f"{c} conns" for c in conns]
        )
        ax.set_title(scenario)
        ax.set_ylabel("requests/s")
    axes[0][0].legend(fontsize="small")
    fig.suptitle("onsale views under wrk (higher is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# -- main -------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    """Parse arguments, run every server through every scenario, report."""
    catalogue = servers(1, 1, 0, "")  # the names, the paths and what is n/a
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(catalogue), help="a selection of the default")
    parser.add_argument("--connections", default="50,200,1000")
    parser.add_argument(
        "--scenarios",
        default=",".join(s.key for s in SCENARIOS),
        help=f"a selection of {', '.join(s.key for s in SCENARIOS)}",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; figures are medians")
    parser.add_argument("--workers", type=int, default=2, help="server processes (every server alike)")
    parser.add_argument("--pool", type=int, default=10, help="database connections per process")
    parser.add_argument("--output", default="http-latest")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")
    _raise_fd_limit()
    names = args.servers.split(",")
    if unknown := set(names) - set(catalogue):
        raise SystemExit(f"--servers: unknown {sorted(unknown)}; use {', '.join(catalogue)}")
    wanted = set(args.scenarios.split(","))
    if unknown := wanted - {s.key for s in SCENARIOS}:
        raise SystemExit(f"--scenarios: unknown {sorted(unknown)}; use {', '.join(s.key for s in SCENARIOS)}")
    selected = [s for s in SCENARIOS if s.key in wanted]
    connections = [int(c) for c in args.connections.split(",")]
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    cookie = prepare_database()
    stubs = {
        latency: start(
            [sys.executable, "upstream.py", "--port", str(port), "--latency", str(latency)],
            EXAMPLE,
            {},
            logs / f"upstream-{port}.log",
        )
        for latency, port in UPSTREAM_PORTS.items()
    }
    runs: list[Run] = []
    skipped: list[NotApplicable] = []
    try:
        for latency, port in UPSTREAM_PORTS.items():
            wait_for(
                f"http://127.0.0.1:{port}/quote?latency=0", stubs[latency], logs / f"upstream-{port}.log"
            )
        for name in names:
            not_applicable = catalogue[name].not_applicable
            skipped += [
                NotApplicable(name, s.name, not_applicable[s.view])
                for s in selected
                if s.view in not_applicable
            ]
            # One server start per configuration (upstream latency, middleware) its scenarios need.
            configurations = dict.fromkeys(
                (s.latency, s.middleware) for s in selected if s.view not in not_applicable
            )
            for latency, middleware in configurations:
                scenarios = [s for s in selected if (s.latency, s.middleware) == (latency, middleware)]
                scenarios = [s for s in scenarios if s.view not in not_applicable]
                runs += serve(name, latency, middleware, scenarios, connections, cookie, args)
    finally:
        for stub in stubs.values():
            stop(stub)

    RESULTS.mkdir(exist_ok=True)
    medians = [
        median_run([r for r in runs if (r.server, r.scenario, r.connections) == key])
        for key in dict.fromkeys((r.server, r.scenario, r.connections) for r in runs)
    ]
    medians.sort(key=lambda r: (r.scenario, r.connections, names.index(r.server)))
    print("\n" + table(medians, skipped, connections, names))
    meta = {
        "command": "python bench/http.py " + " ".join(sys.argv[1:]),
        "python": platform.python_version(),
        "workers": args.workers,
        "pool_per_worker": args.pool,
        "gthread_threads": GTHREAD_THREADS,
        "duration_s": args.duration,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "upstream_client": "example/shop/httpget.py (one request per connection)",
        "scenarios": [asdict(s) for s in selected],
        "baselines": list(BASELINES),
    }
    (RESULTS / f"{args.output}.json").write_text(
        json.dumps(
            {
                **meta,
                "medians": [asdict(r) for r in medians],
                "not_applicable": [asdict(na) for na in skipped],
                "runs": [asdict(r) for r in runs],
            },
            indent=1,
        )
        + "\n"
    )
    chart(medians, RESULTS / f"{args.output}.png")
    print(f"\nwrote {RESULTS / args.output}.json and .png")


def serve(
    name: str,
    latency: float,
    middleware: str,
    scenarios: list[Scenario],
    connections: list[int],
    cookie: str,
    args: argparse.Namespace,
) -> list[Run]:
    """Start server ``name`` with upstream ``latency`` and ``middleware``, run its scenarios, stop it."""
    port = free_port()
    upstream = f"http://127.0.0.1:{UPSTREAM_PORTS[latency]}/quote"
    server = servers(args.workers, args.pool, port, upstream, middleware)[name]
    log = RESULTS / "logs" / f"{name}.log"
    process = start(server.command, server.cwd, server.env, log)
    runs = []
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base + server.paths["event"], process, log)
        for scenario in scenarios:
            url = base + server.paths[scenario.view]
            headers = [f"Cookie: {SESSION_COOKIE}={cookie}"] if scenario.view in LOGGED_IN_VIEWS else []
            probe(url, headers, log)
            for conns in connections:
                for repeat in range(args.repeat):
                    output, peaks = load(url, conns, args.duration, process.pid, headers)
                    with open(RESULTS / "logs" / "wrk.log", "a") as raw:
                        raw.write(f"== {name} {scenario.name} {conns} #{repeat + 1}\n{output}\n")
                    rps, p50, p99, errors = parse_wrk(output)
                    rss_mb = peaks.rss / 2**20
                    run = Run(name, scenario.name, conns, rps, p50, p99, errors, peaks.connections, rss_mb)
                    print(
                        f"{name:20} {scenario.name:34} {conns:5} conns #{repeat + 1}: {rps:8.0f} req/s "
                        f"p50 {p50:7.1f} ms p99 {p99:8.1f} ms errors {errors:5} "
                        f"db {peaks.connections:3} rss {run.peak_rss_mb:5.0f} MB",
                        flush=True,
                    )
                    runs.append(run)
    finally:
        stop(process)
    return runs


if __name__ == "__main__":
    main()
