"""The ``shop`` app: events and the tickets sold for them."""

from django.apps import AppConfig


class ShopConfig(AppConfig):
    """Configuration of the demo's only app."""

    name = "shop"
    verbose_name = "Ticket shop"
