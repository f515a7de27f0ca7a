"""The buy form."""

from __future__ import annotations

from django import forms
from django.db.models import QuerySet

from shop.models import Order

MAX_PER_ORDER = 10


class BuyForm(forms.ModelForm):
    """Which ticket type and how many: an order, whose buyer is the logged-in user."""

    quantity = forms.IntegerField(min_value=1, max_value=MAX_PER_ORDER, initial=1)

    class Meta:
        model = Order
        fields = ["ticket_type", "quantity"]
        labels = {"ticket_type": "Ticket"}

    def __init__(self, *args, tickets: QuerySet, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["ticket_type"]
        # A lazy queryset of the event's ticket types: validating the form
        # looks the chosen one up, and rendering it lists them. Both are
        # queries: the view validates with `await form.ais_valid()` and
        # renders with `await arender(...)`, so they are awaited on the loop.
        field.queryset = tickets
        field.empty_label = None
        field.label_from_instance = lambda t: f"{t.name} (€{t.price}, {t.available} left)"
