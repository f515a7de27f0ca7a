"""The bench endpoints on FastAPI with SQLAlchemy 2's asyncio ORM over asyncpg.

Run from the repository root (``python -m bench.http_apps.serve`` takes the same arguments and
keeps TCP_NODELAY with several workers: see README.md)::

    uvicorn --app-dir . bench.http_apps.fastapi_sqlalchemy:app --workers 2 --host 127.0.0.1 --port 8101

Pool, per worker process: ``TANDEM_BENCH_POOL`` connections (``pool_size=N``, ``max_overflow=0``),
a request waits up to 30 s for one (``pool_timeout``). The engine runs in autocommit, like Django,
so a read is one round trip: no ``BEGIN`` before it and no ``ROLLBACK`` when the session gives its
connection back. Each query below uses its own short-lived ``AsyncSession``, so the dashboard's three
aggregates run on three pooled connections at once and none is held while the upstream is awaited.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, HTTPException
from sqlalchemy import BigInteger, DateTime, ForeignKey, Numeric, Row, Select, String, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench.http_apps._contract import POOL_SIZE, POOL_TIMEOUT, Upstream, dsn_with_driver


class Base(DeclarativeBase):
    pass


class Event(Base):
    __tablename__ = "shop_event"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    venue: Mapped[str] = mapped_column(String(200))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TicketType(Base):
    __tablename__ = "shop_tickettype"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("shop_event.id"))
    name: Mapped[str] = mapped_column(String(100))
    price: Mapped[Decimal] = mapped_column(Numeric(8, 2))
    capacity: Mapped[int]
    sold: Mapped[int]


class Order(Base):
    __tablename__ = "shop_order"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    ticket_type_id: Mapped[int] = mapped_column(ForeignKey("shop_tickettype.id"))
    email: Mapped[str] = mapped_column(String(254))
    quantity: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


engine = create_async_engine(
    dsn_with_driver("asyncpg"),
    pool_size=POOL_SIZE,
    max_overflow=0,
    pool_timeout=POOL_TIMEOUT,
    isolation_level="AUTOCOMMIT",
)
Session = async_sessionmaker(engine, expire_on_commit=False)
upstream = Upstream()

EVENT_BY_ID = select(Event.id, Event.name, Event.venue, Event.starts_at)
EVENT_COUNT = select(func.count()).select_from(Event)
TICKET_TOTALS = select(
    func.coalesce(func.sum(TicketType.capacity), 0), func.coalesce(func.sum(TicketType.sold), 0)
)
ORDER_TOTALS = select(func.count(), func.coalesce(func.sum(Order.quantity), 0)).select_from(Order)


async def first_row(statement: Select[Any]) -> Row[Any] | None:
    """Run ``statement`` in a session of its own (one pooled connection): its first row, if any."""
    async with Session() as session:
        return (await session.execute(statement)).first()


async def only_row(statement: Select[Any]) -> Row[Any]:
    """The same for a statement that always returns exactly one row (an aggregate)."""
    async with Session() as session:
        return (await session.execute(statement)).one()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await upstream.aclose()
    await engine.dispose()


app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/bench/event/{pk}")
async def event(pk: int) -> dict[str, Any]:
    """One event by primary key: one query."""
    row = await first_row(EVENT_BY_ID.where(Event.id == pk))
    if row is None:
        raise HTTPException(status_code=404, detail="no such event")
    return {"id": row.id, "name": row.name, "venue": row.venue, "starts_at": row.starts_at.isoformat()}


@app.get("/bench/dashboard")
async def dashboard() -> dict[str, Any]:
    """Three aggregates and the upstream call, all four at once."""
    events, tickets, orders, quote = await asyncio.gather(
        only_row(EVENT_COUNT),
        only_row(TICKET_TOTALS),
        only_row(ORDER_TOTALS),
        upstream.fetch(),
    )
    return {
        "events": events[0],
        "capacity": tickets[0],
        "sold": tickets[1],
        "orders": orders[0],
        "tickets_ordered": orders[1],
        "upstream": quote,
    }
