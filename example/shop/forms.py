"""The buy form."""

from __future__ import annotations

from django import forms

MAX_PER_ORDER = 10


class BuyForm(forms.Form):
    """Which ticket type, how many, and where to send them."""

    ticket_type = forms.ChoiceField(label="Ticket")
    quantity = forms.IntegerField(min_value=1, max_value=MAX_PER_ORDER, initial=1)
    email = forms.EmailField(label="Your email")

    def __init__(self, *args, tickets: list, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Choices from rows the view already loaded: no query hides in here.
        self.fields["ticket_type"].choices = [
            (str(t.pk), f"{t.name} (€{t.price}, {t.available} left)") for t in tickets
        ]
