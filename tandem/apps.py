"""The ``tandem`` app: add it to ``INSTALLED_APPS`` to activate tandem.

Activation is the top of tandem's layers: it is the one place that knows
every other layer, and wires them into Django and into each other.
"""

from django.apps import AppConfig

__all__ = ["TandemConfig", "activate"]


class TandemConfig(AppConfig):
    """Installs tandem's hooks into Django when the app registry is ready."""

    name = "tandem"
    verbose_name = "tandem: Django's ORM on the event loop"

    def ready(self) -> None:
        from tandem import checks  # noqa: F401 - checks registers itself

        activate()


def activate() -> None:
    """Activate tandem for the process (idempotent; ``TandemConfig.ready`` calls it)."""
    from django.core.signals import setting_changed

    from tandem import conf, patches
    from tandem.bridge import blocking
    from tandem.db import fastlane, scope

    setting_changed.connect(conf.forget)
    setting_changed.connect(fastlane.forget)
    scope.install()
    patches.install("guard")
    patches.install("core")
    patches.when_imported("django.test", lambda: patches.install("testing"))
    blocking.install()
