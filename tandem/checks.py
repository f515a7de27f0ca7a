"""System checks for a consistent tandem configuration."""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from tandem.pool import PoolOptions


def _tandem_aliases() -> list[str]:
    return [
        alias
        for alias, db in settings.DATABASES.items()
        if str(db.get("ENGINE", "")).startswith("tandem.db.backends.")
    ]


@register(Tags.database, Tags.compatibility)
def check_tandem_configuration(app_configs=None, **kwargs) -> list[CheckMessage]:
    """tandem ENGINEs need the tandem app, the app needs a tandem ENGINE, pools must be valid."""
    errors = []
    aliases = _tandem_aliases()
    installed = apps.is_installed("tandem")
    if aliases and not installed:
        errors.append(
            Error(
                f"DATABASES {aliases} use a tandem ENGINE but 'tandem' is not in INSTALLED_APPS.",
                hint="Add 'tandem' to INSTALLED_APPS so Django's async ORM runs natively.",
                id="tandem.E001",
            )
        )
    if installed and not aliases:
        errors.append(
            Warning(
                "'tandem' is in INSTALLED_APPS but no DATABASES alias uses a tandem ENGINE.",
                hint="Set ENGINE to e.g. 'tandem.db.backends.postgresql'.",
                id="tandem.W001",
            )
        )
    for alias in aliases:
        try:
            PoolOptions.from_settings(alias, settings.DATABASES[alias].get("OPTIONS", {}).get("pool"))
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="tandem.E003"))
    return errors
