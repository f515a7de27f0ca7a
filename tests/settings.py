"""Settings for tandem's own test suite.

The database under test is a parameter of the suite: ``TANDEM_TEST_DB``
selects it (``postgresql``, ``sqlite`` or ``mysql``; unset: PostgreSQL if a
server answers, else SQLite). Where the
servers are: ``TANDEM_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``) and ``TANDEM_MYSQL_URL``
(default ``mysql://root@127.0.0.1:3306/test``).
"""

import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

POSTGRES_URL = os.environ.get("TANDEM_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TANDEM_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
SQLITE_DIR = Path(os.environ.get("TANDEM_SQLITE_DIR", tempfile.gettempdir())) / "tandem-tests"


def _server_answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), timeout=0.5).close()
    except OSError:
        return False
    return True


# Unset: PostgreSQL if a server answers, else SQLite, the embedded default.
TEST_DB = os.environ.get("TANDEM_TEST_DB") or ("postgresql" if _server_answers(POSTGRES_URL) else "sqlite")


def postgres(url: str = POSTGRES_URL, **extra) -> dict:
    """A DATABASES entry for the tandem PostgreSQL backend at ``url``."""
    parts = urlsplit(url)
    return {
        "ENGINE": "tandem.db.backends.postgresql",
        "NAME": parts.path.lstrip("/") or "test",
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": {"pool": {"max_size": 20, "timeout": 10}, "application_name": "tandem-tests"},
        **extra,
    }


def mysql(url: str = MYSQL_URL, **extra) -> dict:
    """A DATABASES entry for the tandem MySQL/MariaDB backend at ``url``."""
    parts = urlsplit(url)
    return {
        "ENGINE": "tandem.db.backends.mysql",
        "NAME": parts.path.lstrip("/") or "test",
        "USER": parts.username or "root",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 3306),
        "OPTIONS": {"pool": {"max_size": 20, "timeout": 10}},
        "TEST": {"NAME": "test_tandem", "CHARSET": "utf8mb4"},
        **extra,
    }


def sqlite(name: str, **extra) -> dict:
    """A DATABASES entry for the tandem SQLite backend, file ``name``."""
    return {
        "ENGINE": "tandem.db.backends.sqlite3",
        "NAME": str(SQLITE_DIR / f"{name}.sqlite3"),
        "OPTIONS": {"pool": {"max_size": 20, "timeout": 10}},
        # A file, not Django's default in-memory test database: tests of
        # concurrent writers need WAL, which needs a file (the in-memory
        # test database has a test of its own, alias "memory").
        "TEST": {"NAME": str(SQLITE_DIR / f"test_{name}.sqlite3")},
        **extra,
    }


if TEST_DB == "postgresql":
    # Same test database as "default", with their own OPTIONS; tests that use
    # them declare them in `databases=` (Django refuses undeclared aliases).
    raw_sql = {"TEST": {"MIRROR": "default"}}

    DATABASES = {
        "default": postgres(),
        "small": postgres(**raw_sql, OPTIONS={"pool": {"max_size": 2, "timeout": 0.5}}),
        "checked": postgres(**raw_sql, CONN_HEALTH_CHECKS=True),
        "tuned": postgres(
            **raw_sql,
            OPTIONS={
                "isolation_level": 4,  # psycopg.IsolationLevel.SERIALIZABLE
                "assume_role": "tandem_assumed",
                "server_side_binding": True,
                "prepare_threshold": 0,
            },
        ),
        # A read replica that tests mirror onto the default test database.
        "replica": postgres(TEST={"MIRROR": "default"}),
        # The same server through Django's stock backend, for side-by-side checks.
        "stock": {
            **postgres(),
            "ENGINE": "django.db.backends.postgresql",
            "OPTIONS": {},
            "TEST": {"NAME": "test_tandem_stock"},
        },
    }

elif TEST_DB == "sqlite":
    SQLITE_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": sqlite("default"),
        "small": sqlite("default", OPTIONS={"pool": {"max_size": 2, "timeout": 0.5}}),
        "checked": sqlite("default", CONN_HEALTH_CHECKS=True),
        # Django's own in-memory, shared-cache test database, through the bridge.
        "memory": {"ENGINE": "tandem.db.backends.sqlite3", "NAME": ":memory:"},
        "stock": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(SQLITE_DIR / "stock.sqlite3"),
            "TEST": {"NAME": str(SQLITE_DIR / "test_stock.sqlite3")},
        },
    }
    # "small" and "checked" share default's file; tests use them for raw SQL.
    DATABASES["small"]["TEST"] = DATABASES["checked"]["TEST"] = {"MIRROR": "default"}
    DATABASES["replica"] = sqlite("default", TEST={"MIRROR": "default"})
elif TEST_DB == "mysql":
    DATABASES = {
        "default": mysql(),
        "small": mysql(OPTIONS={"pool": {"max_size": 2, "timeout": 0.5}}, TEST={"MIRROR": "default"}),
        "checked": mysql(CONN_HEALTH_CHECKS=True, TEST={"MIRROR": "default"}),
        "replica": mysql(TEST={"MIRROR": "default"}),
        "tuned": mysql(
            OPTIONS={
                "init_command": "SET @tandem_marker = 42, sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE'",
                "isolation_level": "serializable",
                "pool": {"max_size": 2},
            },
            TEST={"MIRROR": "default"},
        ),
        "stock": {**mysql(), "ENGINE": "django.db.backends.mysql", "OPTIONS": {}},
    }
    DATABASES["stock"]["TEST"] = {"NAME": "test_tandem_stock", "CHARSET": "utf8mb4"}
else:
    raise RuntimeError(f"TANDEM_TEST_DB={TEST_DB!r}: use postgresql, sqlite or mysql")

# One alias stock and one tandem on the same database, as a project moving one
# alias at a time has them (tests/test_routing_matrix.py): a stock replica of
# "default", and a tandem replica of "stock".
DATABASES["stock_mirror"] = {
    **DATABASES["default"],
    "ENGINE": DATABASES["stock"]["ENGINE"],
    "OPTIONS": {},
    "TEST": {"MIRROR": "default"},
}
DATABASES["tandem_of_stock"] = {
    **DATABASES["stock"],
    "ENGINE": DATABASES["default"]["ENGINE"],
    "TEST": {"MIRROR": "stock"},
}

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "tandem",
    "tests.app",
]
SECRET_KEY = "tandem-tests"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.app.urls"
ALLOWED_HOSTS = ["*"]
MIDDLEWARE = []
# Said explicitly: the "stock" alias would otherwise get tandem.W002.
TANDEM_REQUEST_PATH = "native"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
