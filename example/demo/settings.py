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
- ``TANDEM_DEMO_MIDDLEWARE``: ``demo`` (default: four middleware, no
  sessions, auth or messages) or ``startproject``: exactly the middleware
  and context processors of Django's ``startproject`` template, which
  ``bench/http.py``'s ``me-event`` scenario measures with a logged-in user.
- ``TANDEM_DEMO_SYNC_VIEWS``: if set, passed on as tandem's
  ``TANDEM_SYNC_VIEWS`` setting (``threads`` or ``native``: how sync views
  run under ASGI).
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

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

# The demo's own: no sessions, auth or messages, so a request touches the
# database only where a view queries it.
DEMO_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# Django's ``startproject`` template, exactly: a session read and a user
# lookup for every request that asks for the user.
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
MIDDLEWARE_STACK = os.environ.get("TANDEM_DEMO_MIDDLEWARE", "demo")
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

ROOT_URLCONF = "demo.urls"
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

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
