"""App config of the benchmark's models."""

from django.apps import AppConfig


class BenchAppConfig(AppConfig):
    """The ``benchapp`` app: two small related models, no migrations."""

    name = "benchapp"
    default_auto_field = "django.db.models.BigAutoField"
