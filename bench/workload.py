"""What the ORM benchmark times: the same queries in each of its three modes.

Import this module only after ``django.setup()`` (``bench/orm.py`` does).

Every operation has three implementations, each taking ``(alias, fixture)``:

* ``sync``: plain sync ORM calls, run in a worker thread with no event loop;
* ``stock``: Django's async API on a stock alias (``sync_to_async`` threads);
* ``tandem``: the same async API on a tandem alias (native on the loop).

``stock`` and ``tandem`` share their code except for transactions: Django has
no async ``atomic``, so a stock user wraps a sync function doing ``with
atomic()`` in ``sync_to_async``, while a tandem user writes ``aatomic``.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asgiref.sync import sync_to_async
from benchapp.models import Author, Book
from django.db import connections, transaction
from django.db.backends.signals import connection_created
from django.db.models import IntegerField
from django.db.models.expressions import RawSQL

import tandem

__all__ = ["OPERATIONS", "Fixture", "Operation", "prepare", "register_sqlite_sleep"]

AUTHORS = 100
BOOKS_PER_AUTHOR = 20  # the list operation reads exactly one author's books
PARALLEL_QUERIES = 10
SLEEP_SECONDS = 0.05


@dataclass
class Fixture:
    """Rows the operations read and write, found by ``prepare``."""

    author_pk: int  # an author with BOOKS_PER_AUTHOR books: list and count read them
    book_pk: int  # read by the get operation
    scratch_pk: int  # author of every book the write operations create
    book: Book  # saved again and again by the save operation
    copies: dict[str, Book] = field(default_factory=dict)

    def book_for(self, alias: str) -> Book:
        """The instance the save operation rewrites on ``alias`` (one per alias)."""
        if alias not in self.copies:
            self.copies[alias] = copy.copy(self.book)
        return self.copies[alias]


# -- schema and data -----------------------------------------------------------


def prepare(alias: str) -> Fixture:
    """(Re)create the tables on ``alias`` and fill them; sync, outside any loop."""
    connection = connections[alias]
    existing = set(connection.introspection.table_names())
    with connection.schema_editor() as editor:
        # Dropped and recreated each run: every run starts from the same data,
        # and a changed model never meets a stale table.
        for model in (Book, Author):
            if model._meta.db_table in existing:
                editor.delete_model(model)
        for model in (Author, Book):
            editor.create_model(model)
    return _seed(alias)


def _seed(alias: str) -> Fixture:
    authors = Author.objects.using(alias).bulk_create(
        Author(name=f"Author {i}", email=f"author{i}@example.com") for i in range(AUTHORS + 1)
    )
    start = datetime(2000, 1, 1, tzinfo=UTC)
    Book.objects.using(alias).bulk_create(
        Book(title=f"Book {a}-{b}", author=author, pages=100 + b, published=start + timedelta(days=a * b))
        for a, author in enumerate(authors[:AUTHORS])
        for b in range(BOOKS_PER_AUTHOR)
    )
    middle = authors[AUTHORS // 2]
    book = Book.objects.using(alias).filter(author=middle).order_by("pk").first()
    return Fixture(author_pk=middle.pk, book_pk=book.pk, scratch_pk=authors[-1].pk, book=book)


# -- the operations ------------------------------------------------------------


def _books(alias: str):
    return Book.objects.using(alias)


def get_sync(alias: str, fx: Fixture) -> Book:
    """Fetch one book by primary key."""
    return _books(alias).get(pk=fx.book_pk)


async def get_async(alias: str, fx: Fixture) -> Book:
    """Fetch one book by primary key."""
    return await _books(alias).aget(pk=fx.book_pk)


def _page(alias: str, fx: Fixture):
    return _books(alias).select_related("author").filter(author_id=fx.author_pk).order_by("pk")[:20]


def list_sync(alias: str, fx: Fixture) -> list[Book]:
    """Twenty books of one author, each joined to its author."""
    return list(_page(alias, fx))


async def list_async(alias: str, fx: Fixture) -> list[Book]:
    """Twenty books of one author, each joined to its author."""
    return [book async for book in _page(alias, fx)]


def count_sync(alias: str, fx: Fixture) -> int:
    """Count one author's books (a stable count: created books go elsewhere)."""
    return _books(alias).filter(author_id=fx.author_pk).count()


async def count_async(alias: str, fx: Fixture) -> int:
    """Count one author's books (a stable count: created books go elsewhere)."""
    return await _books(alias).filter(author_id=fx.author_pk).acount()


def create_sync(alias: str, fx: Fixture) -> Book:
    """Insert one book."""
    return _books(alias).create(title="New book", author_id=fx.scratch_pk, pages=1)


async def create_async(alias: str, fx: Fixture) -> Book:
    """Insert one book."""
    return await _books(alias).acreate(title="New book", author_id=fx.scratch_pk, pages=1)


def save_sync(alias: str, fx: Fixture) -> None:
    """Save (UPDATE) an existing book."""
    fx.book_for(alias).save(using=alias)


async def save_async(alias: str, fx: Fixture) -> None:
    """Save (UPDATE) an existing book."""
    await fx.book_for(alias).asave(using=alias)


def atomic_sync(alias: str, fx: Fixture) -> None:
    """Three inserts in one transaction."""
    with transaction.atomic(using=alias):
        for _ in range(3):
            create_sync(alias, fx)


async def atomic_stock(alias: str, fx: Fixture) -> None:
    """Three inserts in one transaction, the only way stock async Django can."""
    await sync_to_async(atomic_sync)(alias, fx)


async def atomic_tandem(alias: str, fx: Fixture) -> None:
    """Three inserts in one transaction, with tandem's ``aatomic``."""
    async with tandem.aatomic(using=alias):
        for _ in range(3):
            await create_async(alias, fx)


# A query that makes the server wait SLEEP_SECONDS, per vendor. One row, so
# the server sleeps exactly once per query. SQLite has no sleep: the benchmark
# registers SQLITE_SLEEP on each connection (register_sqlite_sleep), and it
# runs in the thread executing the query, like any SQLite function.
SQLITE_SLEEP = "bench_sleep"
SLEEP_SQL = {
    "postgresql": "(SELECT 1 FROM pg_sleep(%s))",
    "mysql": "(SELECT SLEEP(%s))",
    "sqlite": f"(SELECT {SQLITE_SLEEP}(%s))",
}


def _sleep(seconds: float) -> int:
    time.sleep(seconds)  # releases the GIL, as a server-side sleep frees the client
    return 1


# Raw connections that have the function, kept alive so no id is reused.
_sleepy: dict[int, object] = {}


def _add_sleep(sender, connection, **kwargs) -> None:
    if connection.vendor != "sqlite":
        return
    # tandem's backend wraps the driver's connection (ThreadedConnection.raw).
    raw = getattr(connection.connection, "raw", connection.connection)
    if id(raw) not in _sleepy:
        raw.create_function(SQLITE_SLEEP, 1, _sleep)
        _sleepy[id(raw)] = raw


def register_sqlite_sleep() -> None:
    """Give every SQLite connection opened from now on the ``bench_sleep`` function."""
    connection_created.connect(_add_sleep, dispatch_uid="tandem-bench-sleep")


def _sleeper(alias: str, fx: Fixture):
    sql = SLEEP_SQL[connections[alias].vendor]
    sleep = RawSQL(sql, (SLEEP_SECONDS,), output_field=IntegerField())
    return Author.objects.using(alias).filter(pk=fx.author_pk).annotate(slept=sleep)


def parallel_sync(alias: str, fx: Fixture) -> None:
    """The slow queries one after the other: all a sync view can do."""
    for _ in range(PARALLEL_QUERIES):
        _sleeper(alias, fx).first()


async def parallel_async(alias: str, fx: Fixture) -> None:
    """The slow queries at once, with ``asyncio.gather``."""
    await asyncio.gather(*(_sleeper(alias, fx).afirst() for _ in range(PARALLEL_QUERIES)))


# -- the table of operations ---------------------------------------------------

SyncOp = Callable[[str, Fixture], object]
AsyncOp = Callable[[str, Fixture], Awaitable[object]]


@dataclass(frozen=True)
class Operation:
    """One benchmarked operation and its implementation for each mode."""

    key: str
    title: str
    sync: SyncOp
    stock: AsyncOp
    tandem: AsyncOp
    share: float = 1.0  # fraction of --iterations it runs: slow operations run fewer
    in_ms: bool = False  # reported as total ms per call instead of µs per operation

    def iterations(self, base: int) -> int:
        """How many calls one measurement makes, for ``--iterations base``."""
        return max(2, round(base * self.share))


OPERATIONS: tuple[Operation, ...] = (
    Operation("aget", "aget by pk", get_sync, get_async, get_async),
    Operation("list20", "list 20, select_related", list_sync, list_async, list_async),
    Operation("acount", "acount", count_sync, count_async, count_async),
    Operation("acreate", "acreate", create_sync, create_async, create_async),
    Operation("asave", "asave existing", save_sync, save_async, save_async),
    Operation("atomic3", "atomic, 3 creates", atomic_sync, atomic_stock, atomic_tandem, share=0.5),
    Operation(
        "parallel",
        f"{PARALLEL_QUERIES} parallel sleep({SLEEP_SECONDS:g})",
        parallel_sync,
        parallel_async,
        parallel_async,
        share=0.025,  # a sync call takes half a second
        in_ms=True,
    ),
)
