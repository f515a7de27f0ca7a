"""PgBouncer in transaction mode, for the runner's ``pgbouncer`` database (scenario 7).

The runner starts a PgBouncer of its own (``PgBouncer.start()``, in the
parent process, around the ``pgbouncer`` child) on a free loopback port,
with a configuration written to a temporary directory: ``pool_mode =
transaction``, ``trust`` authentication, every database name passed on to
the PostgreSQL server the suite uses. It stops it when the child is done,
whatever happened; and since a runner killed outright runs no ``finally``,
PgBouncer is also told to exit when the runner does (Linux's parent-death
signal), so no PgBouncer outlives a run.

The child reads PgBouncer's admin console (the special ``pgbouncer``
database) to see tandem's connections as PgBouncer's clients
(``Console.clients``) and its pool for the runner's database
(``Console.pool``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from chaos.proxy import free_port

# As chaos/settings.py (and the test suite) find the server.
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
# The environment variable that tells the child where PgBouncer listens.
PORT_ENV = "TANDEM_CHAOS_PGBOUNCER_PORT"
# Server connections per database and user (PgBouncer's default_pool_size).
# Above the 20 connections the busiest scenario holds at once, so that
# PgBouncer never makes a task wait: the timings the pool scenarios check are
# tandem's own. The books check PgBouncer never holds more.
POOL_SIZE = 25
MAX_CLIENT_CONN = 500
START_SECONDS = 10.0  # how long PgBouncer may take to listen
STOP_SECONDS = 5.0  # how long it may take to exit on SIGTERM before SIGKILL
PR_SET_PDEATHSIG = 1  # linux/prctl.h
LOG_LINES = 5  # lines of PgBouncer's log quoted when it does not start


class Unavailable(Exception):  # noqa: N818 - a reason, not a failure of ours
    """PgBouncer is not installed here: the message says why and how to get it."""


def executable() -> str:
    """PgBouncer's binary (Debian puts it in /usr/sbin, often not on PATH), or ``Unavailable``."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise Unavailable("PgBouncer is not installed (apt-get install pgbouncer; `make chaos` installs it)")
    return found


def version(binary: str) -> str:
    """``PgBouncer 1.18.0``: the first line of ``pgbouncer --version``."""
    result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    return (result.stdout.strip().splitlines() or ["PgBouncer, version unknown"])[0]


def _run_as() -> pwd.struct_passwd | None:
    """Who PgBouncer runs as: it refuses to run as root, so as root ``postgres`` (or ``nobody``)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise Unavailable("running as root, and neither a postgres nor a nobody user to run PgBouncer as")


def _die_with_parent() -> None:
    """In the forked child, before exec: SIGTERM when the runner exits, even on SIGKILL.

    Set after Popen has switched user (the kernel clears it on a change of
    credentials). Linux only; elsewhere ``PgBouncer.stop`` is all there is.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _quote(value: str) -> str:
    """A value for PgBouncer's auth_file: in double quotes, a quote doubled."""
    return '"' + value.replace('"', '""') + '"'


@dataclass(frozen=True)
class Server:
    """The PostgreSQL server PgBouncer forwards to (from ``TANDEM_POSTGRES_URL``)."""

    host: str
    port: int
    user: str
    password: str

    @classmethod
    def from_environment(cls) -> Server:
        """``TANDEM_POSTGRES_URL`` (the database in it is not used), with the suite's default."""
        parts = urlsplit(os.environ.get("TANDEM_POSTGRES_URL", DEFAULT_POSTGRES_URL))
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
        )


def config(port: int, server: Server, auth_file: Path) -> str:
    """The pgbouncer.ini the runner uses."""
    return f"""\
[databases]
; Any database name a client asks for, on the same name on the server.
* = host={server.host} port={server.port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
; No Unix socket: nothing to clean up, nothing shared with another PgBouncer.
unix_socket_dir =
auth_type = trust
auth_file = {auth_file}
admin_users = {server.user}
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = {MAX_CLIENT_CONN}
; A server login that fails (a kill may land on one) is retried after 1 s, not 15.
server_login_retry = 1
log_connections = 0
"""


class PgBouncer:
    """One PgBouncer process of the runner's (``with PgBouncer.start() as bouncer:``)."""

    def __init__(self, process: subprocess.Popen, port: int, directory: Path, version: str) -> None:
        self.process = process
        self.port = port
        self.directory = directory
        self.version = version

    @classmethod
    def start(cls, server: Server) -> PgBouncer:
        """Start PgBouncer in front of ``server`` and wait until it listens.

        ``Unavailable`` if it is not installed; ``RuntimeError`` (with its
        log) if it is but does not start.
        """
        binary = executable()
        user = _run_as()
        directory = Path(tempfile.mkdtemp(prefix="tandem-chaos-pgbouncer-"))
        try:
            return cls._start_in(directory, binary, user, server)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    @classmethod
    def _start_in(
        cls, directory: Path, binary: str, user: pwd.struct_passwd | None, server: Server
    ) -> PgBouncer:
        auth_file = directory / "userlist.txt"
        auth_file.write_text(f"{_quote(server.user)} {_quote(server.password)}\n")
        ini = directory / "pgbouncer.ini"
        log = directory / "pgbouncer.log"
        for path in (ini, log):
            path.touch()
        as_user: dict[str, Any] = {}
        if user is not None:
            # The directory is private (0700): PgBouncer, as that user, reads its files there.
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            for path in (directory, auth_file, ini, log):
                os.chown(path, user.pw_uid, user.pw_gid)
        last = ""
        for _attempt in range(3):  # the free port may be taken between probe and bind
            port = free_port()
            ini.write_text(config(port, server, auth_file))
            with log.open("ab") as output:
                process = subprocess.Popen(
                    [binary, str(ini)],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent,  # safe: the runner has no other threads
                    **as_user,
                )
            bouncer = cls(process, port, directory, version(binary))
            if bouncer._wait_listening():
                return bouncer
            bouncer._terminate()
            last = "\n".join(log.read_text(errors="replace").splitlines()[-LOG_LINES:])
        raise RuntimeError(f"PgBouncer did not start; its log ends with:\n{last}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                return True
            time.sleep(0.05)
        return False

    def _terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # PgBouncer's fast exit: closes every connection at once
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> None:
        """Stop PgBouncer (its server connections close with it) and remove its directory."""
        try:
            self._terminate()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


# -- the admin console, seen from the child --------------------------------------------------


@dataclass(frozen=True)
class Client:
    """One of PgBouncer's client connections: one of tandem's connections."""

    state: str  # active (served or idle), waiting (for a server connection), ..._cancel_req
    linked: bool  # paired with a server connection: in a transaction or running a statement

    @property
    def busy(self) -> bool:
        """Holding or waiting for a server connection: in transaction mode, only mid-transaction."""
        return self.linked or self.state != "active"


def console_params(port: int, user: str, password: str) -> dict[str, Any]:
    """psycopg's connection parameters for PgBouncer's admin console."""
    import psycopg

    return {
        "host": "127.0.0.1",
        "port": port,
        "user": user,
        "password": password,
        "dbname": "pgbouncer",
        "autocommit": True,  # the console knows no BEGIN
        # ...and only the simple query protocol, which client-side cursors use.
        "cursor_factory": psycopg.AsyncClientCursor,
    }


class Console:
    """PgBouncer's admin console, on a scenario's loop (``await Console.connect(...)``)."""

    def __init__(self, conn: Any, database: str) -> None:
        self._conn = conn
        self.database = database

    @classmethod
    async def connect(cls, params: dict[str, Any], database: str) -> Console:
        """Connect to the console; ``database`` is the runner's, which the queries look at."""
        import psycopg

        return cls(await psycopg.AsyncConnection.connect(**params), database)

    async def close(self) -> None:
        """Close the console connection."""
        await self._conn.close()

    async def _show(self, what: str) -> list[dict[str, Any]]:
        cursor = await self._conn.execute(f"SHOW {what}")
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]

    async def clients(self) -> list[Client]:
        """PgBouncer's client connections to the runner's database."""
        rows = await self._show("CLIENTS")
        return [Client(r["state"], bool(r["link"])) for r in rows if r["database"] == self.database]

    async def pool(self) -> dict[str, Any]:
        """``SHOW POOLS``' row for the runner's database (empty before its first client)."""
        rows = await self._show("POOLS")
        return next((r for r in rows if r["database"] == self.database), {})
