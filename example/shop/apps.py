"""The ``shop`` app: events and the tickets sold for them."""

import time

from django.apps import AppConfig
from django.db.backends.signals import connection_created


class ShopConfig(AppConfig):
    """Configuration of the demo's only app."""

    name = "shop"
    verbose_name = "Ticket shop"

    def ready(self) -> None:
        connection_created.connect(add_sqlite_sleep)


def add_sqlite_sleep(sender, connection, **kwargs) -> None:
    """Give SQLite connections the ``shop_sleep(seconds)`` the dashboard uses."""
    if connection.vendor == "sqlite":
        raw = getattr(connection.connection, "raw", connection.connection)
        raw.create_function("shop_sleep", 1, lambda seconds: time.sleep(seconds) or 0)
