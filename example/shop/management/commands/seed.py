"""``manage.py seed``: the demo user, and events and ticket types for an empty shop."""

import random
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
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
# The user visitors log in as (`make demo` prints these): a demo on
# loopback, never a real site's password.
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo"
DEMO_EMAIL = "demo@onsale.example"
# (name, price, capacity) of the ticket types every event offers.
TICKET_TYPES = [
    ("Standing", Decimal("25.00"), 400),
    ("Seated", Decimal("45.00"), 150),
    ("VIP", Decimal("120.00"), 20),
]


class Command(BaseCommand):
    """Create the demo user if missing, and 20 events with three ticket types each if there are none.

    Idempotent, so ``make demo`` can run it every time. A plain sync command:
    outside an event loop the tandem backend behaves like Django's own.
    """

    help = "Create the demo user and demo events with ticket types (only what is missing)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--events", type=int, default=20, help="How many events to create.")

    def handle(self, *args, events: int, **options) -> None:
        if not get_user_model().objects.filter(username=DEMO_USERNAME).exists():
            get_user_model().objects.create_user(DEMO_USERNAME, DEMO_EMAIL, DEMO_PASSWORD)
            self.stdout.write(self.style.SUCCESS(f"Created user {DEMO_USERNAME!r} ({DEMO_EMAIL})."))
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
