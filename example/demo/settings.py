"""Settings for the tandem demo: a tiny ticket shop served by uvicorn.

The only tandem-specific parts are ``"tandem"`` in ``INSTALLED_APPS`` and the
``tandem.db.backends.postgresql`` ENGINE with its ``OPTIONS["pool"]``.
Everything else is a plain Django project.
"""

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent

# A demo served on loopback only: a fixed key and DEBUG are fine here, never in production.
SECRET_KEY = "tandem-demo-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    # tandem's activation imports django.contrib.contenttypes.fields, which
    # needs contenttypes installed.
    "django.contrib.contenttypes",
    "tandem",
    "shop",
]

# No sessions, auth or messages: they would touch the database from sync
# middleware, and the demo is about the async views.
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo.urls"
ASGI_APPLICATION = "demo.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    },
]


def database_from_url(url: str) -> dict:
    """A tandem PostgreSQL ``DATABASES`` entry for ``postgresql://user:password@host:port/name``."""
    parts = urlsplit(url)
    return {
        "ENGINE": "tandem.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "tandem_demo",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # tandem's own per-event-loop pool: the dashboard runs five queries at
        # once, each on its own pooled connection.
        "OPTIONS": {"pool": {"max_size": 10}},
    }


DATABASES = {
    "default": database_from_url(
        os.environ.get("TANDEM_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/tandem_demo")
    ),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
