"""Events, their ticket types with a fixed capacity, and the orders that sell them."""

from django.conf import settings
from django.db import models


class Event(models.Model):
    """Something people buy tickets for."""

    name = models.CharField(max_length=200)
    venue = models.CharField(max_length=200)
    starts_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["starts_at", "pk"]

    def __str__(self) -> str:
        return self.name


class TicketType(models.Model):
    """One kind of ticket for an event (standing, seated, ...), with its stock."""

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="ticket_types")
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    capacity = models.PositiveIntegerField()
    sold = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["price", "pk"]
        # The database itself refuses to oversell, whatever the code does.
        constraints = [
            models.CheckConstraint(
                condition=models.Q(sold__lte=models.F("capacity")), name="sold_within_capacity"
            )
        ]

    def __str__(self) -> str:
        # Only own fields: a lazy self.event lookup would be a query, and
        # str() must stay safe to call from async code.
        return self.name

    @property
    def available(self) -> int:
        """Tickets left to sell."""
        return self.capacity - self.sold


class Order(models.Model):
    """Tickets bought: one row per successful purchase."""

    ticket_type = models.ForeignKey(TicketType, on_delete=models.PROTECT, related_name="orders")
    # Who bought: orders from before onsale had logins have no user.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="orders"
    )
    email = models.EmailField()
    quantity = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"order {self.pk}: {self.quantity} x ticket type {self.ticket_type_id}"
