"""The demo shop's tables (created by example/'s migrations), mapped for django-async-backend.

``managed = False``: this project never creates or migrates them. ``AsyncModelMixin`` adds
``Model.async_objects``, the package's async manager.
"""

from django.db import models
from django_async_backend.db.models.base import AsyncModelMixin


class Event(AsyncModelMixin, models.Model):
    name = models.CharField(max_length=200)
    venue = models.CharField(max_length=200)
    starts_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "shop_event"
        # As in example/shop/models.py, so that ORM queries come out the same.
        ordering = ["starts_at", "pk"]


class TicketType(AsyncModelMixin, models.Model):
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="ticket_types")
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    capacity = models.PositiveIntegerField()
    sold = models.PositiveIntegerField(default=0)

    class Meta:
        managed = False
        db_table = "shop_tickettype"
        ordering = ["price", "pk"]


class Order(AsyncModelMixin, models.Model):
    ticket_type = models.ForeignKey(TicketType, on_delete=models.PROTECT, related_name="orders")
    email = models.EmailField()
    quantity = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "shop_order"
        ordering = ["-created_at", "-pk"]
