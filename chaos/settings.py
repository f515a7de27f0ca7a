"""Django settings for one database under the chaos runner.

The runner starts one process per database and names it in
``TANDEM_CHAOS_DB`` (``postgresql``, ``pgbouncer``, ``mysql`` or
``sqlite``). Servers are found like tandem's own suite finds them
(``TANDEM_POSTGRES_URL``, ``TANDEM_MYSQL_URL``), but the runner uses
databases of its own, ``tandem_chaos_<django version>``, created if missing,
so that it never touches the test suite's or CI's databases and that the two
supported Django versions can run side by side.

``pgbouncer`` is PostgreSQL reached through the PgBouncer the runner started
(``chaos/pgbouncer.py``, in transaction mode, its port in
``TANDEM_CHAOS_PGBOUNCER_PORT``), on a database of its own,
``tandem_chaos_pgbouncer_<django version>``, so that it never shares one with
a ``postgresql`` run. Its aliases are set as a project behind PgBouncer in
transaction mode must set them: no server-side cursors, no prepared
statements (see docs/reliability.md, scenario 7). The runner's own admin
connection goes to PostgreSQL directly (``ADMIN``).

Aliases, all on that one database:

* ``default``: what views and transfers use; 20 connections, health checks
  on (a connection killed while idle is replaced, not handed out);
* ``exhaust``: 5 connections, a 0.5 s pool timeout (pool exhaustion);
* ``queue``: 5 connections, a 5 s pool timeout (cancelled waiters);
* ``setup``: sync code only (schema, seeding), no pool of Django's, its own
  ``application_name``, closed before a scenario starts.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import django

from chaos import pgbouncer
from chaos.proxy import free_port as _free_port

DB = os.environ.get("TANDEM_CHAOS_DB", "postgresql")
POSTGRES_URL = os.environ.get("TANDEM_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TANDEM_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
SQLITE_DIR = Path(os.environ.get("TANDEM_SQLITE_DIR", tempfile.gettempdir())) / "tandem-chaos"
VERSION = "{}{}".format(*django.VERSION[:2])

# The database every alias uses, and how the server tells our sessions apart.
# pgbouncer's is its own: a postgresql run may use tandem_chaos_<version> meanwhile.
_PREFIX = "tandem_chaos_pgbouncer" if DB == "pgbouncer" else "tandem_chaos"
NAME = f"{_PREFIX}_{VERSION}"
APPLICATION_NAME = f"{_PREFIX.replace('_', '-')}-{VERSION}"  # PostgreSQL: the pools' sessions
SETUP_APPLICATION_NAME = f"{_PREFIX.replace('_', '-')}-setup-{VERSION}"

# Pool options of each alias (docs/howto/pool.md).
POOLS = {
    "default": {"max_size": 20, "timeout": 10.0},
    "exhaust": {"max_size": 5, "timeout": 0.5},
    "queue": {"max_size": 5, "timeout": 5.0},
}


def _server(url: str, default_user: str) -> dict:
    parts = urlsplit(url)
    return {
        "NAME": NAME,
        "USER": parts.username or default_user,
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or ""),
    }


def _pgbouncer_port() -> str:
    port = os.environ.get(pgbouncer.PORT_ENV)
    if not port:
        raise RuntimeError(f"TANDEM_CHAOS_DB=pgbouncer needs {pgbouncer.PORT_ENV}: use python -m chaos")
    return port


def _alias(alias: str) -> dict:
    if DB == "postgresql":
        entry = {"ENGINE": "tandem.db.backends.postgresql", **_server(POSTGRES_URL, "postgres")}
        options: dict = {"application_name": APPLICATION_NAME}
    elif DB == "pgbouncer":
        entry = {
            "ENGINE": "tandem.db.backends.postgresql",
            **_server(POSTGRES_URL, "postgres"),
            "HOST": "127.0.0.1",
            "PORT": _pgbouncer_port(),
            # A server-side cursor outside a transaction is declared WITH HOLD
            # and read in later transactions, which PgBouncer may send to
            # another server connection.
            "DISABLE_SERVER_SIDE_CURSORS": True,
        }
        # Django's default, spelled out: psycopg never prepares a statement
        # (a named prepared statement lives on one server connection).
        options = {"application_name": APPLICATION_NAME, "prepare_threshold": None}
    elif DB == "mysql":
        entry = {"ENGINE": "tandem.db.backends.mysql", **_server(MYSQL_URL, "root")}
        options = {"charset": "utf8mb4"}
    elif DB == "sqlite":
        entry = {"ENGINE": "tandem.db.backends.sqlite3", "NAME": str(SQLITE_DIR / f"{NAME}.sqlite3")}
        # The pool scenarios hold connections in idle transactions: DEFERRED
        # ones take no lock until they write (IMMEDIATE, tandem's default,
        # would make every holder queue for the write lock at BEGIN).
        options = {"transaction_mode": "DEFERRED"} if alias in ("exhaust", "queue") else {}
    else:
        raise RuntimeError(f"TANDEM_CHAOS_DB={DB!r}: use postgresql, pgbouncer, mysql or sqlite")
    if alias == "setup":
        if DB in ("postgresql", "pgbouncer"):
            options["application_name"] = SETUP_APPLICATION_NAME
    else:
        options["pool"] = POOLS[alias]
    return {**entry, "OPTIONS": options, "CONN_HEALTH_CHECKS": alias == "default"}


DATABASES = {alias: _alias(alias) for alias in ("default", "exhaust", "queue", "setup")}


# Scenario 2 (outage): the same database through the runner's TCP proxy
# (chaos/proxy.py), which cuts and freezes it. The timeouts are the ones a
# project sets to bound how long a request can wait for a server that is
# down (docs/reliability.md, "Server outage"): connecting, the pool, and a
# statement (server-side; MariaDB's client also gets a read timeout).
OUTAGE_PORT = _free_port()
OUTAGE_TIMEOUTS = {"connect": 2, "pool": 3.0, "statement": 1.0, "read": 3}


def _outage_alias(health_checks: bool) -> dict:
    entry = {**DATABASES["default"], "HOST": "127.0.0.1", "PORT": str(OUTAGE_PORT)}
    options = {**entry["OPTIONS"], "connect_timeout": OUTAGE_TIMEOUTS["connect"]}
    options["pool"] = {"max_size": 10, "timeout": OUTAGE_TIMEOUTS["pool"]}
    statement_ms = int(OUTAGE_TIMEOUTS["statement"] * 1000)
    if DB == "postgresql":
        options["options"] = f"-c statement_timeout={statement_ms}"
    else:
        options["init_command"] = f"SET SESSION max_statement_time={OUTAGE_TIMEOUTS['statement']:g}"
        options["read_timeout"] = OUTAGE_TIMEOUTS["read"]
    return {**entry, "OPTIONS": options, "CONN_HEALTH_CHECKS": health_checks}


if DB in ("postgresql", "mysql"):
    DATABASES["outage"] = _outage_alias(health_checks=True)
    DATABASES["outage_unchecked"] = _outage_alias(health_checks=False)

# Where the runner's admin connection goes: the server itself, never PgBouncer.
if DB in ("postgresql", "pgbouncer"):
    ADMIN = _server(POSTGRES_URL, "postgres")
elif DB == "mysql":
    ADMIN = _server(MYSQL_URL, "root")
else:
    ADMIN = {}
# PgBouncer's admin console (the special "pgbouncer" database), as the server's user.
PGBOUNCER_CONSOLE = (
    pgbouncer.console_params(int(_pgbouncer_port()), ADMIN["USER"], ADMIN["PASSWORD"])
    if DB == "pgbouncer"
    else None
)

INSTALLED_APPS = ["tandem", "chaos.app"]
SECRET_KEY = "tandem-chaos"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "chaos.app.urls"
ALLOWED_HOSTS = ["*"]
MIDDLEWARE = ["chaos.app.middleware.DatabaseErrorsAs503"]
TANDEM_REQUEST_PATH = "native"
DEBUG = False
# A 500 is counted and its exception reported by the runner; Django's own
# "Internal Server Error" log lines would only repeat it.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django.request": {"handlers": ["null"], "propagate": False}},
}
