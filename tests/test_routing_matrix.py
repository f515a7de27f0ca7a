"""Routers and mixed aliases: each async ORM call runs where stock Django's alias says.

A primary/replica router sends writes to one alias and reads to another; a
project that moves to tandem one alias at a time has one of them stock.
Three set-ups - every alias tandem, the primary stock, the replica stock -
times every async entry point of the ORM and the ways sync code reaches a
thread, outside a transaction and inside an ``aatomic()`` block that rolls
back. For each: every query runs natively when the alias Django's code
picked for it is a tandem alias and in a thread when it is a stock one (as
stock Django runs it), writes land on the router's write alias, and nothing
written on the block's alias survives its rollback.
"""

import asyncio
from dataclasses import dataclass

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import SynchronousOnlyOperation
from django.db import connections
from django.test import override_settings

from tandem import TransactionInThread, aatomic, in_bridge
from tandem.db.scope import is_tandem_alias
from tests import recorder
from tests.app.models import Author, Book, Category
from tests.settings import TEST_DB

ALIASES = ["default", "replica", "stock", "stock_mirror", "tandem_of_stock"]
pytestmark = pytest.mark.django_db(transaction=True, databases=ALIASES)

SETUPS = {  # name: (write alias, read alias)
    "all tandem": ("default", "replica"),
    "primary stock": ("stock", "tandem_of_stock"),
    "replica stock": ("default", "stock_mirror"),
}


@dataclass
class Router:
    """Django's primary/replica router."""

    write: str
    read: str

    def db_for_read(self, model, **hints):
        return self.read

    def db_for_write(self, model, **hints):
        return self.write

    def allow_relation(self, obj1, obj2, **hints):
        return True


_TRANSACTION = {"BEGIN", "COMMIT", "ROLLBACK"}


async def _author(name: str) -> Author:
    return await Author.objects.acreate(name=name)


# Each entry point: (writes?, coroutine function of a unique name).
async def _get_or_create(n):
    await Author.objects.aget_or_create(name=n)


async def _update_or_create(n):
    await Author.objects.aupdate_or_create(name=n, defaults={"name": n})


async def _bulk_create(n):
    await Author.objects.abulk_create([Author(name=n)])


async def _update(n):
    author = await _author("to update " + n)
    await Author.objects.filter(pk=author.pk).aupdate(name=n)


async def _save(n):
    await Author(name=n).asave()


async def _instance_delete(n):
    author = await _author(n)
    await Author(pk=author.pk, name=n).adelete()
    await _author(n)  # a row to find afterwards


async def _queryset_delete(n):
    await _author("doomed " + n)
    await Author.objects.filter(name="doomed " + n).adelete()
    await _author(n)


async def _related_create(n):
    author = await _author(n)
    await author.books.acreate(title=n)


async def _many_to_many_add(n):
    author = await _author(n)
    book = await Book.objects.acreate(title=n, author=author)
    category = await Category.objects.acreate(name=n)
    await book.categories.aadd(category)


async def _reads(n):
    await _author(n)
    await Author.objects.acount()
    await Author.objects.filter(name=n).aexists()
    [a async for a in Author.objects.all()]
    author = Author(pk=0)
    author._state.db = None
    try:
        await author.arefresh_from_db()
    except Author.DoesNotExist:
        pass


ENTRY_POINTS = {
    "acreate": lambda n: _author(n),
    "aget_or_create": _get_or_create,
    "aupdate_or_create": _update_or_create,
    "abulk_create": _bulk_create,
    "aupdate": _update,
    "asave": _save,
    "Model.adelete": _instance_delete,
    "QuerySet.adelete": _queryset_delete,
    "related acreate": _related_create,
    "many-to-many aadd": _many_to_many_add,
    "reads": _reads,
}
THREAD_PATHS = {
    "sync_to_async": lambda fn: sync_to_async(fn)(),
    "sync_to_async(thread_sensitive=False)": lambda fn: sync_to_async(fn, thread_sensitive=False)(),
    "asyncio.to_thread": lambda fn: asyncio.to_thread(fn),
}


class Boom(Exception):  # noqa: N818 - raised on purpose
    pass


def _names(alias: str) -> list[str]:
    def read():
        try:
            return sorted(Author.objects.using(alias).values_list("name", flat=True))
        finally:
            connections.close_all()

    return read


async def names_in(alias: str) -> list[str]:
    return await asyncio.to_thread(_names(alias))


async def _run(call, in_block: str | None, name: str):
    """Run ``call(name)``, inside a block on ``in_block`` that rolls back, if given."""
    if in_block is None:
        return await call(name)
    with pytest.raises(Boom):
        async with aatomic(using=in_block):
            await call(name)
            raise Boom


def _create(name: str):
    """Sync code that writes an author, then closes its thread's connections."""

    def create():
        try:
            Author.objects.create(name=name)
        finally:
            if not in_bridge():  # a thread's stock connections would outlive the test
                connections.close_all()

    return create


def _block_alias(write: str, read: str) -> str:
    block = write if is_tandem_alias(write) else read
    if TEST_DB == "sqlite" and block != write:
        # One file: tandem's transactions begin IMMEDIATE (they take SQLite's
        # one write lock), so the stock primary's writes would wait for the
        # replica's block to end (docs/howto/sqlite.md).
        pytest.skip("SQLite: a block on the replica holds the primary's write lock")
    return block


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("in_block", [False, True], ids=["autocommit", "rolled-back block"])
async def test_every_entry_point_runs_where_its_alias_lives(setup, in_block):
    write, read = SETUPS[setup]
    block = _block_alias(write, read) if in_block else None
    expected = []
    with override_settings(DATABASE_ROUTERS=[Router(write, read)]):
        for label, call in ENTRY_POINTS.items():
            start = len(recorder.log)
            await _run(call, block, label)
            ran = [(q.alias, q.bridged) for q in recorder.log[start:] if q.sql not in _TRANSACTION]
            assert ran, label
            assert all(bridged == is_tandem_alias(alias) for alias, bridged in ran), (label, ran)
            expected.append(label)
    # Stock calls ran in asgiref's thread: its connections would outlive the test.
    await sync_to_async(connections.close_all)()
    survivors = [] if block == write else sorted(expected)
    assert [n for n in await names_in(write) if n in expected] == survivors


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("path", THREAD_PATHS)
async def test_thread_paths_inside_a_block_join_or_refuse(setup, path):
    write, read = SETUPS[setup]
    block = _block_alias(write, read)
    start = THREAD_PATHS[path]
    with override_settings(DATABASE_ROUTERS=[Router(write, read)]):
        with pytest.raises(Boom):
            async with aatomic(using=block):
                outcome = None
                try:
                    await start(_create("from sync code"))
                except (TransactionInThread, SynchronousOnlyOperation) as exc:
                    outcome = type(exc)
                raise Boom
        # Outside the block every path writes, as in stock Django.
        await start(_create("outside"))
    if path == "sync_to_async":
        # Thread-sensitive code joins the block in the bridge: its writes roll
        # back with it; a stock write alias cannot be reached from the bridge.
        assert outcome is (SynchronousOnlyOperation if block != write else None)
    else:
        # A thread cannot join: refused when it writes on the block's alias.
        assert outcome is (TransactionInThread if block == write else None)
    survivors = ["outside"] if block == write or outcome else ["from sync code", "outside"]
    assert await names_in(write) == survivors
