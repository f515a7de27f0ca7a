"""Settings for tandem's own test suite.

The database under test is a parameter of the suite: ``TANDEM_TEST_DB``
(default ``postgresql``) selects it, and ``TANDEM_POSTGRES_URL`` (default
``postgresql://postgres@127.0.0.1:5432/test``) says where PostgreSQL is.
"""

import os
from urllib.parse import urlsplit

from psycopg import IsolationLevel

TEST_DB = os.environ.get("TANDEM_TEST_DB", "postgresql")
POSTGRES_URL = os.environ.get("TANDEM_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


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


if TEST_DB != "postgresql":
    raise RuntimeError(f"TANDEM_TEST_DB={TEST_DB!r}: only 'postgresql' is supported so far")

# Aliases the tests never declare in `databases=`: pytest-django creates no
# test database for them, so they reach the server's `postgres` database with
# their own OPTIONS. Their tests run raw SQL only.
raw_sql = {"NAME": "postgres"}

DATABASES = {
    "default": postgres(),
    "small": postgres(**raw_sql, OPTIONS={"pool": {"max_size": 2, "timeout": 0.5}}),
    "checked": postgres(**raw_sql, CONN_HEALTH_CHECKS=True),
    "tuned": postgres(
        **raw_sql,
        OPTIONS={
            "isolation_level": IsolationLevel.SERIALIZABLE,
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

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
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
