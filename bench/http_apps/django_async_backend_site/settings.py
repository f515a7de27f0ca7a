"""Settings of the django-async-backend bench server.

The database alias uses ``django_async_backend.db.backends.postgresql``: psycopg 3 async connections,
pooled per worker process by psycopg_pool's ``AsyncConnectionPool`` configured in
``OPTIONS["pool"]``, the same shape as Django's own PostgreSQL pool option: ``min_size=1``,
``max_size=TANDEM_BENCH_POOL``, ``timeout=30`` (seconds a request waits for a free connection).
A request's own connection goes back to the pool at ``request_finished`` (the package's app
connects that signal); ``async_new_connection`` blocks give theirs back when they end.

``TANDEM_BENCH_DAB_API`` picks how the views query: ``orm`` (default: the package's async ORM,
``Model.async_objects``) or ``cursor`` (its async cursor with the contract's literal SQL).
"""

import os

from django.core.exceptions import ImproperlyConfigured

from bench.http_apps._contract import POOL_SIZE, POOL_TIMEOUT, database

# A benchmark served on loopback only: a fixed key is fine here, never in production.
SECRET_KEY = "tandem-bench-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = ["django_async_backend", __package__]

# The same middleware as the tandem demo (example/demo/settings.py), so that the Django servers
# differ only in their database layer.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = f"{__package__}.urls"

_db = database()
DATABASES = {
    "default": {
        "ENGINE": "django_async_backend.db.backends.postgresql",
        "NAME": _db.name,
        "USER": _db.user,
        "PASSWORD": _db.password,
        "HOST": _db.host,
        "PORT": str(_db.port),
        "OPTIONS": {"pool": {"min_size": 1, "max_size": POOL_SIZE, "timeout": POOL_TIMEOUT}},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"

BENCH_QUERY_API = os.environ.get("TANDEM_BENCH_DAB_API", "orm")
if BENCH_QUERY_API not in ("orm", "cursor"):
    raise ImproperlyConfigured("TANDEM_BENCH_DAB_API must be orm or cursor.")

# Server errors (500s) to stderr: with DEBUG off, Django would otherwise only mail them to ADMINS.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}
