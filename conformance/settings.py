"""Settings for Django's ``tests/runtests.py`` under the conformance runner.

The runner passes the database and the mode in the environment:
``TANDEM_CONFORMANCE_DB`` (``postgresql``, ``sqlite`` or ``mysql``) and
``TANDEM_CONFORMANCE_MODE`` (``stock``: Django's own backend on both aliases;
``sync`` and ``bridged``: tandem's on both; ``mixed``: tandem's on
``default``, Django's on ``other``; ``mixed-flip``: the other way round).
Servers are found like tandem's own suite finds them (``TANDEM_POSTGRES_URL``,
``TANDEM_MYSQL_URL``, ``TANDEM_REDIS_URL``).
"""

import email.errors
import os
import sys
from urllib.parse import urlsplit

import django

DB = os.environ.get("TANDEM_CONFORMANCE_DB", "sqlite")
MODE = os.environ.get("TANDEM_CONFORMANCE_MODE", "bridged")
STOCK = MODE == "stock"

_ENGINES = {
    "postgresql": ("django.db.backends.postgresql", "tandem.db.backends.postgresql"),
    "sqlite": ("django.db.backends.sqlite3", "tandem.db.backends.sqlite3"),
    "mysql": ("django.db.backends.mysql", "tandem.db.backends.mysql"),
}
# The aliases each mode puts on tandem's backend; the others are on Django's. The mixed
# modes are a project that moves one alias at a time (docs/conformance.md, "Mixed aliases").
TANDEM_ALIASES = {
    "stock": (),
    "sync": ("default", "other"),
    "bridged": ("default", "other"),
    "mixed": ("default",),
    "mixed-flip": ("other",),
}
if DB not in _ENGINES or MODE not in TANDEM_ALIASES:
    raise RuntimeError(f"TANDEM_CONFORMANCE_DB={DB!r}, TANDEM_CONFORMANCE_MODE={MODE!r}")
_VERSION = "{}{}".format(*django.VERSION[:2])


def engine(alias: str, db: str = DB, mode: str = MODE) -> str:
    """The ``ENGINE`` of ``alias`` on ``db`` in ``mode``: tandem's or Django's."""
    return _ENGINES[db][alias in TANDEM_ALIASES[mode]]


def test_database_prefix(mode: str) -> str:
    """What the names of ``mode``'s test databases begin with (``--parallel`` adds clones)."""
    return f"test_tandem_conformance_{_VERSION}_{mode.replace('-', '_')}_"


def _server(url: str, alias: str, db: str, mode: str) -> dict:
    parts = urlsplit(url)
    # Each Django version and mode gets its own test databases, so that runs
    # can go on side by side and never trip over what another left behind.
    return {
        "ENGINE": engine(alias, db, mode),
        "NAME": f"tandem_conformance_{alias}",
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "TEST": {"NAME": test_database_prefix(mode) + alias},
    }


def database(alias: str, db: str = DB, mode: str = MODE) -> dict:
    """The ``DATABASES`` entry of ``alias`` for ``db`` in ``mode``."""
    if db == "postgresql":
        url = os.environ.get("TANDEM_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
        return _server(url, alias, db, mode)
    if db == "mysql":
        url = os.environ.get("TANDEM_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
        entry = _server(url, alias, db, mode)
        entry["USER"] = entry["USER"] or "root"
        entry["TEST"]["CHARSET"] = "utf8mb4"
        return entry
    # Django's default for its suite: shared-cache in-memory test databases.
    return {"ENGINE": engine(alias, db, mode)}


DATABASES = {"default": database("default"), "other": database("other")}


def _redis() -> dict:
    """The Redis server of tandem's own suite (``TANDEM_REDIS_URL``), in a database of our own.

    Django's ``cache`` tests flush the whole database (``cache.clear()``), so
    each supported Django and mode gets a database of its own: 10 to 15 for
    stock, sync and bridged, 5 to 8 for the mixed modes (tandem's own tests
    use 9): runs side by side never see each other's keys. The number goes in
    ``OPTIONS``, not in the URL, where it would win over the
    ``OPTIONS["db"]`` that ``test_redis_pool_options`` sets.
    """
    parts = urlsplit(os.environ.get("TANDEM_REDIS_URL", "redis://127.0.0.1:6379/9"))
    if MODE in ("mixed", "mixed-flip"):
        number = 5 + 2 * (django.VERSION[0] >= 6) + ("mixed", "mixed-flip").index(MODE)
    else:
        number = 10 + 3 * (django.VERSION[0] >= 6) + ("stock", "sync", "bridged").index(MODE)
    return {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": parts._replace(path="", query="").geturl(),
        "OPTIONS": {"db": number},
    }


# Django's default cache, plus the Redis entry by which Django's ``cache``
# tests find their Redis backend (by this BACKEND string; without one they
# skip RedisCacheTests). In every mode but stock (tandem installed) the string
# names tandem's RedisCache: the runner rebinds it (conformance/backends.py).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "redis": _redis(),
}

# A project with one alias on each backend gets tandem.W002 from its system checks until it sets
# TANDEM_REQUEST_PATH: the native request path runs sync middleware on the loop, where a query
# on a stock alias raises SynchronousOnlyOperation. The mixed modes set it as such a project
# would: "native" where the default alias (sessions, auth) is tandem's, "threads" (stock
# Django's request path) where it is Django's. Without it, mixed-flip's async requests fail in
# SessionMiddleware, and the check's warning fails admin_checks (docs/conformance.md).
if MODE == "mixed":
    TANDEM_REQUEST_PATH = "native"
elif MODE == "mixed-flip":
    TANDEM_REQUEST_PATH = "threads"

SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# What Django's own tests/test_sqlite.py of the same version sets: up to 5.2
# AutoField; 6.0 made BigAutoField the default and its suite expects it (with
# AutoField here, 6.1's schema, migrations, introspection and model_options
# tests failed in every mode, stock included, and so proved nothing).
if django.VERSION < (6, 0):
    DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
TEST_RUNNER = "conformance.runner.ConformanceRunner"

# runtests.py replaces INSTALLED_APPS with its ALWAYS_INSTALLED_APPS list when
# it starts; a tandem backend needs the tandem app (system check tandem.E001),
# as in any project, so it goes into that list before runtests reads it.
_runtests = sys.modules.get("__main__")
if not STOCK and "tandem" not in getattr(_runtests, "ALWAYS_INSTALLED_APPS", ["tandem"]):
    _runtests.ALWAYS_INSTALLED_APPS.append("tandem")

# Django 6.1's mail/test_backends.py, home of its SMTP backend tests, imports
# email.errors.HeaderWriteError, which Python has had since 3.12.5 and 3.13
# (gh-121650); on an older 3.12 the whole module would fail to import. This
# stand-in is never raised, as the real one is not by such a Python, and the
# tests already allow for a Python that does not raise it.
if not hasattr(email.errors, "HeaderWriteError"):
    email.errors.HeaderWriteError = type("HeaderWriteError", (email.errors.MessageError,), {})
