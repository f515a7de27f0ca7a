"""System checks for a consistent tandem configuration."""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from tandem import conf
from tandem.db.pool import PoolOptions

__all__ = ["check_tandem_configuration"]


def _tandem_aliases() -> list[str]:
    return [
        alias
        for alias, db in settings.DATABASES.items()
        if str(db.get("ENGINE", "")).startswith("tandem.db.backends.")
    ]


@register(Tags.compatibility)
def check_tandem_configuration(app_configs=None, **kwargs) -> list[CheckMessage]:
    """The app needs a tandem ENGINE, and pool options must be valid.

    The reverse mistake - a tandem ENGINE without the app - is reported by the
    backend itself (``tandem.E001``, see ``tandem.db.backends.base``): without the
    app nothing registers this function.
    """
    errors = []
    aliases = _tandem_aliases()
    if apps.is_installed("tandem") and not aliases:
        errors.append(
            Warning(
                "'tandem' is in INSTALLED_APPS but no DATABASES alias uses a tandem ENGINE.",
                hint="Set ENGINE to e.g. 'tandem.db.backends.postgresql'.",
                id="tandem.W001",
            )
        )
    errors += [Error(message, id="tandem.E004") for message in conf.validate()]
    stock = [alias for alias in settings.DATABASES if alias not in aliases]
    if aliases and stock and not hasattr(settings, "TANDEM_REQUEST_PATH"):
        errors.append(
            Warning(
                f"DATABASES aliases {stock} use stock Django backends, and sync middleware "
                "runs on the event loop (TANDEM_REQUEST_PATH defaults to 'native'): a sync "
                "middleware hook that queries those aliases raises SynchronousOnlyOperation.",
                hint="Mark such middleware with tandem.handlers.in_thread or list it in "
                "TANDEM_THREAD_MIDDLEWARE, or set TANDEM_REQUEST_PATH explicitly "
                "('threads' restores stock Django's request path).",
                id="tandem.W002",
            )
        )
    for alias in aliases:
        try:
            PoolOptions.from_settings(alias, settings.DATABASES[alias].get("OPTIONS", {}).get("pool"))
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="tandem.E003"))
    return errors
