"""The bench endpoints on Starlette with Tortoise ORM over asyncpg.

Run from the repository root (``python -m bench.http_apps.serve`` takes the same arguments and
keeps TCP_NODELAY with several workers: see README.md)::

    uvicorn --app-dir . bench.http_apps.tortoise_app:app --workers 2 --host 127.0.0.1 --port 8102

Pool, per worker process: an asyncpg pool of ``minsize=1``, ``maxsize=TANDEM_BENCH_POOL``. Outside a
transaction Tortoise takes a pool connection for each query and gives it back right after, so the
dashboard's three aggregates run on three connections at once and none is held while the upstream is
awaited. Tortoise acquires without a timeout: a request waits for a connection as long as it takes.
asyncpg's pool runs its reset query on each connection it takes back: a second round trip per query,
the default that a Tortoise user gets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tortoise import fields
from tortoise.contrib.starlette import RegisterTortoise
from tortoise.functions import Coalesce, Count, Sum
from tortoise.models import Model

from bench.http_apps._contract import POOL_SIZE, Upstream, database


class Event(Model):
    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=200)
    venue = fields.CharField(max_length=200)
    starts_at = fields.DatetimeField()

    class Meta:
        table = "shop_event"


class TicketType(Model):
    id = fields.BigIntField(primary_key=True)
    event: fields.ForeignKeyRelation[Event] = fields.ForeignKeyField("bench.Event", db_constraint=False)
    name = fields.CharField(max_length=100)
    price = fields.DecimalField(max_digits=8, decimal_places=2)
    capacity = fields.IntField()
    sold = fields.IntField()

    class Meta:
        table = "shop_tickettype"


class Order(Model):
    id = fields.BigIntField(primary_key=True)
    ticket_type: fields.ForeignKeyRelation[TicketType] = fields.ForeignKeyField(
        "bench.TicketType", db_constraint=False
    )
    email = fields.CharField(max_length=254)
    quantity = fields.IntField()
    created_at = fields.DatetimeField()

    class Meta:
        table = "shop_order"


upstream = Upstream()


def tortoise_config() -> dict[str, Any]:
    """Tortoise's configuration for ``TANDEM_BENCH_DSN`` and ``TANDEM_BENCH_POOL``."""
    db = database()
    credentials = {
        "host": db.host,
        "port": db.port,
        "user": db.user,
        "password": db.password,
        "database": db.name,
        "minsize": 1,
        "maxsize": POOL_SIZE,
    }
    return {
        "connections": {"default": {"engine": "tortoise.backends.asyncpg", "credentials": credentials}},
        "apps": {"bench": {"models": [__name__], "default_connection": "default"}},
    }


async def event(request: Request) -> JSONResponse:
    """One event by primary key: one query."""
    pk = request.path_params["pk"]
    found = await Event.filter(id=pk).first().values("id", "name", "venue", "starts_at")
    if found is None:
        return JSONResponse({"detail": "no such event"}, status_code=404)
    return JSONResponse({**found, "starts_at": found["starts_at"].isoformat()})


async def dashboard(request: Request) -> JSONResponse:
    """Three aggregates and the upstream call, all four at once."""
    events, tickets, orders, quote = await asyncio.gather(
        Event.all().count(),
        TicketType.annotate(total_capacity=Coalesce(Sum("capacity"), 0), total_sold=Coalesce(Sum("sold"), 0))
        .first()
        .values("total_capacity", "total_sold"),
        Order.annotate(orders=Count("id"), tickets_ordered=Coalesce(Sum("quantity"), 0))
        .first()
        .values("orders", "tickets_ordered"),
        upstream.fetch(),
    )
    return JSONResponse(
        {
            "events": events,
            "capacity": tickets["total_capacity"],
            "sold": tickets["total_sold"],
            **orders,
            "upstream": quote,
        }
    )


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with RegisterTortoise(app, config=tortoise_config()):
        yield
    await upstream.aclose()


app = Starlette(
    routes=[Route("/bench/event/{pk:int}", event), Route("/bench/dashboard", dashboard)],
    lifespan=lifespan,
)
