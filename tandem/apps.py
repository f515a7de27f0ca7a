"""The ``tandem`` app: add it to ``INSTALLED_APPS`` to activate tandem."""

from django.apps import AppConfig


class TandemConfig(AppConfig):
    """Installs tandem's hooks into Django when the app registry is ready."""

    name = "tandem"
    verbose_name = "tandem: Django's ORM on the event loop"

    def ready(self) -> None:
        from tandem import activate, checks  # noqa: F401 - checks registers itself

        activate.install()
