"""``manage.py seed``: fill an empty shop with events and ticket types."""

import random
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from shop.models import Event, TicketType

ARTISTS = [
    "The Async Awaits",
    "Greenlet Quartet",
    "Pool Party",
    "Select For Update",
    "Savepoint Sisters",
    "Event Loop Orchestra",
    "Cursor & The Rows",
    "Deadlock Free",
    "Prefetch Collective",
    "The Migrations",
]
VENUES = ["Main Hall", "Riverside Stage", "The Basement", "Open Air Park"]
# (name, price, capacity) of the ticket types every event offers.
TICKET_TYPES = [
    ("Standing", Decimal("25.00"), 400),
    ("Seated", Decimal("45.00"), 150),
    ("VIP", Decimal("120.00"), 20),
]


class Command(BaseCommand):
    """Create 20 upcoming events with three ticket types each, if there are no events yet.

    Idempotent, so ``make demo`` can run it every time. A plain sync command:
    outside an event loop the tandem backend behaves like Django's own.
    """

    help = "Create demo events and ticket types (only if the shop is empty)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--events", type=int, default=20, help="How many events to create.")

    def handle(self, *args, events: int, **options) -> None:
        if Event.objects.exists():
            self.stdout.write(f"Shop already has {Event.objects.count()} events; nothing to do.")
            return
        # A fixed seed gives every machine the same demo data.
        rng = random.Random(2024)
        first = timezone.now().replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
        with transaction.atomic():
            created = Event.objects.bulk_create(
                Event(
                    name=f"{rng.choice(ARTISTS)} live",
                    venue=rng.choice(VENUES),
                    starts_at=first + timedelta(days=3 * i, hours=rng.choice([0, 1, 2])),
                )
                for i in range(events)
            )
            TicketType.objects.bulk_create(
                TicketType(
                    event=event, name=name, price=price, capacity=capacity, sold=rng.randint(0, capacity)
                )
                for event in created
                for name, price, capacity in TICKET_TYPES
            )
        self.stdout.write(
            self.style.SUCCESS(f"Created {len(created)} events with {len(TICKET_TYPES)} ticket types each.")
        )
