"""Django settings for one database under the chaos runner.

The runner starts one process per database and names it in
``TANDEM_CHAOS_DB`` (``postgresql``, ``mysql`` or ``sqlite``). Servers are
found like tandem's own suite finds them (``TANDEM_POSTGRES_URL``,
``TANDEM_MYSQL_URL``), but the runner uses databases of its own,
``tandem_chaos_<django version>``, created if missing, so that it never
touches the test suite's or CI's databases and that the two supported
Django versions can run side by side.

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

DB = os.environ.get("TANDEM_CHAOS_DB", "postgresql")
POSTGRES_URL = os.environ.get("TANDEM_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TANDEM_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
SQLITE_DIR = Path(os.environ.get("TANDEM_SQLITE_DIR", tempfile.gettempdir())) / "tandem-chaos"
VERSION = "{}{}".format(*django.VERSION[:2])

# The database every alias uses, and how the server tells our sessions apart.
NAME = f"tandem_chaos_{VERSION}"
APPLICATION_NAME = f"tandem-chaos-{VERSION}"  # PostgreSQL: the pools' sessions
SETUP_APPLICATION_NAME = f"tandem-chaos-setup-{VERSION}"

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


def _alias(alias: str) -> dict:
    if DB == "postgresql":
        entry = {"ENGINE": "tandem.db.backends.postgresql", **_server(POSTGRES_URL, "postgres")}
        options: dict = {"application_name": APPLICATION_NAME}
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
        raise RuntimeError(f"TANDEM_CHAOS_DB={DB!r}: use postgresql, mysql or sqlite")
    if alias == "setup":
        if DB == "postgresql":
            options["application_name"] = SETUP_APPLICATION_NAME
    else:
        options["pool"] = POOLS[alias]
    return {**entry, "OPTIONS": options, "CONN_HEALTH_CHECKS": alias == "default"}


DATABASES = {alias: _alias(alias) for alias in ("default", "exhaust", "queue", "setup")}

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
