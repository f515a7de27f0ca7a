"""Settings for onsale, the tandem demo: a ticket sale served by uvicorn.

The only tandem-specific parts are ``"tandem"`` in ``INSTALLED_APPS`` and a
``tandem.db.backends.*`` ENGINE with its ``OPTIONS["pool"]``. Everything else
is a plain Django project.

Environment:

- ``TANDEM_DEMO_DB`` picks the database: ``sqlite`` (the default: a file
  next to manage.py, no server needed), ``postgresql``
  (``TANDEM_POSTGRES_URL``) or ``mysql`` (MariaDB/MySQL, ``TANDEM_MYSQL_URL``).
- ``TANDEM_DEMO_BACKEND``: ``tandem`` (default) or ``stock``, Django's own
  backend for the same database (with Django's psycopg_pool on PostgreSQL),
  which ``bench/http.py`` compares against.
- ``TANDEM_DEMO_POOL``: connections per pool (per event loop; default 10).
- ``TANDEM_DEMO_UPSTREAM``: the upstream service's URL (default
  ``http://127.0.0.1:8001/quote``, which ``upstream.py`` serves).
- ``TANDEM_DEMO_DEBUG``: ``1`` (default) or ``0``.
- ``TANDEM_DEMO_MIDDLEWARE``: ``startproject`` (default): exactly the
  middleware and context processors of Django's ``startproject`` template,
  which the login, buying and the mailbox need (``bench/http.py``'s
  ``me-event`` scenario measures it with a logged-in user); or ``demo``:
  four middleware, no sessions, auth or messages, which ``bench/http.py``
  measures its other scenarios with (the pages that need a user don't work
  under it).
- ``TANDEM_DEMO_CACHE``: ``redis`` (default: the Redis server at
  ``TANDEM_DEMO_REDIS``, default ``redis://127.0.0.1:6379``, which the demo
  needs like it needs its database server) or ``locmem``: a cache in the
  process's memory, no server needed.
- ``TANDEM_DEMO_SMTP_PORT``: the port of the SMTP sink on 127.0.0.1 that
  order confirmations go to (default 8025, where ``mailsink.py`` listens).
- ``TANDEM_DEMO_SYNC_VIEWS``: if set, passed on as tandem's
  ``TANDEM_SYNC_VIEWS`` setting (``threads`` or ``native``: how sync views
  run under ASGI).
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import django
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

# A demo served on loopback only: a fixed key and DEBUG are fine here, never in
# production. (bench/http.py turns DEBUG off: it keeps every query in memory.)
SECRET_KEY = "tandem-demo-not-a-secret"
DEBUG = os.environ.get("TANDEM_DEMO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    # tandem's activation imports django.contrib.contenttypes.fields, which
    # needs contenttypes installed.
    "django.contrib.contenttypes",
    # Installed (their tables migrated) whichever middleware runs, so that
    # TANDEM_DEMO_MIDDLEWARE switches the request path and nothing else.
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "tandem",
    "shop",
]

# No sessions, auth or messages, so a request touches the database only where
# a view queries it: what bench/http.py compares servers with (and the
# demo's default before it had logins, hence its name).
DEMO_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Django's ``startproject`` template, exactly: a session read and a user
# lookup for every request that asks for the user. The demo's default: its
# pages show who is logged in.
STARTPROJECT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
CONTEXT_PROCESSORS = ["django.template.context_processors.request"]
MIDDLEWARE_STACK = os.environ.get("TANDEM_DEMO_MIDDLEWARE", "startproject")
if MIDDLEWARE_STACK == "demo":
    MIDDLEWARE = DEMO_MIDDLEWARE
elif MIDDLEWARE_STACK == "startproject":
    MIDDLEWARE = STARTPROJECT_MIDDLEWARE
    CONTEXT_PROCESSORS += [
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]
else:
    raise ImproperlyConfigured(f"TANDEM_DEMO_MIDDLEWARE={MIDDLEWARE_STACK!r}: use demo or startproject.")

if "TANDEM_DEMO_SYNC_VIEWS" in os.environ:
    TANDEM_SYNC_VIEWS = os.environ["TANDEM_DEMO_SYNC_VIEWS"]
# The ORM fast lane is on by default; bench/http.py measures the demo without it too.
TANDEM_FAST_LANE = os.environ.get("TANDEM_DEMO_FAST_LANE", "1") == "1"

ROOT_URLCONF = "demo.urls"
# The demo's own login page (shop/views.py), where @login_required sends visitors.
LOGIN_URL = "login"
ASGI_APPLICATION = "demo.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": CONTEXT_PROCESSORS},
    },
]


UPSTREAM_URL = os.environ.get("TANDEM_DEMO_UPSTREAM", "http://127.0.0.1:8001/quote")

STOCK = os.environ.get("TANDEM_DEMO_BACKEND", "tandem") == "stock"
if os.environ.get("TANDEM_DEMO_BACKEND", "tandem") not in ("tandem", "stock"):
    raise ImproperlyConfigured("TANDEM_DEMO_BACKEND must be tandem or stock.")
ENGINES = "django.db.backends" if STOCK else "tandem.db.backends"
POOL_SIZE = int(os.environ.get("TANDEM_DEMO_POOL", "10"))
# tandem's per-event-loop pool: the dashboard's parallel queries each take
# a pooled connection. In a rush, buyers queue for a connection rather than
# fail: hence the long timeout. (Stock Django pools on PostgreSQL only, with
# psycopg_pool.)
POOL = {"pool": {"min_size": 1, "max_size": POOL_SIZE, "timeout": 60}}


def server_database(engine: str, url: str) -> dict:
    """A ``DATABASES`` entry for ``scheme://user:password@host:port/name``."""
    parts = urlsplit(url)
    return {
        "ENGINE": f"{ENGINES}.{engine}",
        "NAME": unquote(parts.path.lstrip("/")) or "tandem_demo",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": POOL if engine == "postgresql" or not STOCK else {},
    }


DEMO_DB = os.environ.get("TANDEM_DEMO_DB", "sqlite")
if DEMO_DB == "sqlite":
    default = {
        "ENGINE": f"{ENGINES}.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
        "OPTIONS": {} if STOCK else POOL,
    }
elif DEMO_DB == "postgresql":
    url = os.environ.get("TANDEM_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/tandem_demo")
    default = server_database("postgresql", url)
elif DEMO_DB == "mysql":
    default = server_database(
        "mysql", os.environ.get("TANDEM_MYSQL_URL", "mysql://root@127.0.0.1:3306/tandem_demo")
    )
else:
    raise ImproperlyConfigured(f"TANDEM_DEMO_DB={DEMO_DB!r}: use sqlite, postgresql or mysql.")
DATABASES = {"default": default}
if STOCK:  # the baseline: plain Django, tandem not installed at all
    INSTALLED_APPS.remove("tandem")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The dashboard's numbers are cached (shop/dashboard.py). tandem's Redis
# backend is a drop-in for Django's: same LOCATION and OPTIONS, and its
# aget/aset are awaited on the loop instead of hopping to a thread. The
# KEY_PREFIX keeps onsale's keys apart from anything else on the server.
REDIS_CACHE = {
    "BACKEND": "django.core.cache.backends.redis.RedisCache"
    if STOCK
    else "tandem.cache.backends.redis.RedisCache",
    "LOCATION": os.environ.get("TANDEM_DEMO_REDIS", "redis://127.0.0.1:6379"),
    "KEY_PREFIX": "onsale",
}
DEMO_CACHE = os.environ.get("TANDEM_DEMO_CACHE", "redis")
if DEMO_CACHE == "redis":
    CACHES = {"default": REDIS_CACHE}
elif DEMO_CACHE == "locmem":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise ImproperlyConfigured(f"TANDEM_DEMO_CACHE={DEMO_CACHE!r}: use redis or locmem.")

# Order confirmations go by SMTP to the sink `make demo` starts beside
# uvicorn (mailsink.py), which appends every message it receives to
# MAILSINK_STORE, a JSON-lines file the mailbox page reads. tandem's SMTP
# backend is a drop-in for Django's whose SMTP conversation is awaited on
# the loop.
MAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if STOCK else "tandem.mail.backends.smtp.EmailBackend"
)
SMTP_SINK = {"host": "127.0.0.1", "port": int(os.environ.get("TANDEM_DEMO_SMTP_PORT", "8025")), "timeout": 10}
if django.VERSION >= (6, 1):  # MAILERS replaces the EMAIL_* settings
    MAILERS = {"default": {"BACKEND": MAIL_BACKEND, "OPTIONS": SMTP_SINK}}
else:
    EMAIL_BACKEND = MAIL_BACKEND
    EMAIL_HOST, EMAIL_PORT, EMAIL_TIMEOUT = SMTP_SINK["host"], SMTP_SINK["port"], SMTP_SINK["timeout"]
DEFAULT_FROM_EMAIL = "onsale <tickets@onsale.example>"
MAILSINK_STORE = BASE_DIR / "mail.jsonl"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
