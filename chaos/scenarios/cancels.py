"""Scenario 9: tasks cancelled at random points inside ``aatomic`` blocks, COMMIT included.

Each block has a number and writes six ``Piece`` rows tagged with it, in
four statements, one of them inside a nested ``aatomic`` (a savepoint). It
registers a sync ``on_commit`` callback in the outer block and an async one
in the savepoint; both note the block's number, and the async one also
writes a ``Callback`` row (a query after the commit). Blocks run 30 at a
time (the pool has 20 connections, so some wait for one), and most of them
are cancelled, in one of these ways (the mode of each block is drawn at
random, after a first batch of control blocks that measures how long a
block and its commit take on this database):

* ``control``: not cancelled;
* ``cancel``: ``task.cancel()`` at a random moment: one in four uniform
  between 0 and 1.25 times a control block's median duration from the
  task's start (so some land while it waits for a connection, or on
  SQLite for the write lock), the others uniform between 0 and 1.25 times
  a control transaction's median life (from BEGIN's answer to its first
  callback) from the moment the block is entered;
* ``timeout``, ``wait_for``: the deadline of an ``asyncio.timeout`` or an
  ``asyncio.wait_for`` around the block, uniform over 1.25 times a control
  block's median duration;
* ``group``: a sibling task in the same ``TaskGroup`` fails at such a moment;
* ``commit``: cancelled just after the block's last statement returned,
  while its COMMIT is in flight. On PostgreSQL the COMMIT is made slow for
  real: a deferred constraint trigger on ``Piece`` sleeps ``commit_ms``
  (20 ms) when the transaction commits, and the cancel comes uniformly 0
  to 20 ms plus a control block's median commit time (from the last
  statement's answer to the first callback) after the last statement.
  Elsewhere nothing makes a COMMIT slow: the cancel comes at a random
  offset within 1.5 times that median commit time (about a millisecond on
  SQLite, the disk's flush on MariaDB);
* ``caught``: one statement (a slow INSERT of a seventh piece, 1 s) runs
  under a 20 ms ``asyncio.timeout``; the block catches the ``TimeoutError``
  and goes on with its next statement.

What must hold afterwards:

* every block has all of its pieces or none;
* the blocks that have pieces are exactly those whose sync callback ran,
  and exactly those whose async callback ran; no callback ran twice; every
  async callback whose query completed left its ``Callback`` row;
* a block whose task returned committed; every ``control`` block returned;
* a ``caught`` block rolled back: its next query raised
  ``TransactionManagementError`` (a cancelled query marks its block for
  rollback, as an exception would), nothing of it committed;
* a block cancelled during its COMMIT that did commit says so: the
  ``CancelledError`` its caller gets carries a note saying it committed;
  no note says a block committed that did not, or the reverse.

How each block ended is counted (``figures["outcomes"]``), and where the
cancels the runner sent itself landed (``figures["cancels_landed"]``):
``begin`` (waiting for a connection, BEGIN), ``statements``, ``committing``
(the last statement had returned, no callback had run yet: the COMMIT),
``callbacks``, ``done``.
"""

from __future__ import annotations

import asyncio
import functools
import random
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.transaction import TransactionManagementError

from chaos.app.models import Callback, Piece
from chaos.app.views import sqlite_rows
from chaos.books import Hung, Run, describe
from chaos.scenarios.common import error_kind
from tandem import aatomic, native

BLOCKS, QUICK_BLOCKS = 3000, 400
IN_FLIGHT = 30
BASELINE = 60  # control blocks first: how long a block, and its commit, take here
# How often each mode is drawn after the baseline.
MODES = {"control": 1, "cancel": 3, "timeout": 1, "wait_for": 1, "group": 1, "commit": 3, "caught": 1}
PARTS = frozenset(range(6))  # the pieces of a block
CAUGHT_PART = 6  # the seventh piece: the ``caught`` blocks' slow statement writes it
SLOW_SECONDS = 1.0  # that slow statement's length
CAUGHT_TIMEOUT = 0.02  # ... and the timeout it runs under
SLOW_COMMIT_MS = 20  # PostgreSQL: how long a ``commit`` block's COMMIT takes (the trigger)
SPREAD = 1.25  # random cancels land within this many median block durations
BLOCK_LIMIT = 30.0  # seconds before one block counts as hung
EXAMPLES = 8  # block numbers quoted per broken invariant

TRIGGER = "chaos_slow_commit"
# PostgreSQL: a deferred constraint trigger runs at COMMIT, so a row with
# commit_ms > 0 makes its transaction's COMMIT take that long on the server.
SLOW_COMMIT_SQL = (
    f"CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN PERFORM pg_sleep(NEW.commit_ms / 1000.0); RETURN NULL; END $$",
    f"DROP TRIGGER IF EXISTS {TRIGGER} ON {{table}}",
    f"CREATE CONSTRAINT TRIGGER {TRIGGER} AFTER INSERT ON {{table}} DEFERRABLE INITIALLY DEFERRED "
    f"FOR EACH ROW WHEN (NEW.commit_ms > 0) EXECUTE FUNCTION {TRIGGER}()",
)
# The ``caught`` blocks' slow INSERT of their seventh piece, after sleeping on the server.
SLOW_INSERT = {
    "postgresql": "INSERT INTO {table} (block, part, commit_ms) SELECT %s, %s, 0 FROM pg_sleep(%s)",
    "mysql": "INSERT INTO {table} (block, part, commit_ms) SELECT %s, %s, 0 * SLEEP(%s)",
    # No sleep in SQLite: count rows for about that long (chaos.app.views.sqlite_rows).
    "sqlite": "INSERT INTO {table} (block, part, commit_ms) SELECT %s, %s, 0 * (WITH RECURSIVE "
    "c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %s) SELECT count(*) FROM c)",
}
EXPECTED = {
    "cancelled": "asyncio.CancelledError (the block's task was cancelled)",
    "timed out": "TimeoutError (asyncio.timeout or wait_for around the block)",
    "sibling failed": "SiblingFailed (a TaskGroup sibling failed; the block's task was cancelled)",
    "refused": "TransactionManagementError (a query after a cancelled one in the same block)",
}


class SiblingFailed(Exception):  # noqa: N818 - raised on purpose, not an error
    """Raised on purpose by a block's sibling in a ``TaskGroup``."""


def install_slow_commit() -> None:
    """Sync: the trigger that makes a COMMIT slow (PostgreSQL)."""
    with connection.cursor() as cursor:
        for sql in SLOW_COMMIT_SQL:
            cursor.execute(sql.format(table=connection.ops.quote_name(Piece._meta.db_table)))


def slow_insert(number: int) -> None:
    """Sync: the ``caught`` block's seventh piece, after ``SLOW_SECONDS`` on the server."""
    vendor = connection.vendor
    wait = sqlite_rows(SLOW_SECONDS) if vendor == "sqlite" else SLOW_SECONDS
    sql = SLOW_INSERT[vendor].format(table=connection.ops.quote_name(Piece._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, [number, CAUGHT_PART, wait])


def says(exc: BaseException | None) -> str:
    """What the notes on ``exc`` (or on what it came from) say of its block: committed, rolled back, or ''."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for note in getattr(exc, "__notes__", ()):
            note = note.lower()
            if "rolled back" in note or "not committed" in note:
                return "rolled back"
            if "committed" in note:
                return "committed"
        exc = exc.__cause__ or exc.__context__
    return ""


STAGES = ("begin", "statements", "committing", "callbacks", "done")


@dataclass(eq=False)
class Block:
    """One ``aatomic`` block: what it is to do, and what became of it."""

    number: int
    mode: str
    anchor: str = "begin"  # the stage its cancel is timed from (``cancel``, ``commit``)
    delay: float = 0.0  # seconds after that (or after it starts) it is cancelled
    commit_ms: int = 0
    stage: str = "queued"
    times: dict[str, float] = field(default_factory=dict)  # when it reached each stage (loop time)
    hooks: dict[str, Callable[[], None]] = field(default_factory=dict)  # called on reaching a stage
    at_cancel: str = ""  # its stage when the runner cancelled it itself
    caught: BaseException | None = None  # ``caught``: what its slow statement raised
    error: BaseException | None = None  # what left the block (dropped once classified)
    error_kind: str = ""  # ... its class and message
    said: str = ""  # ... and what its notes say of the block (``says``)
    outcome: str = ""

    @property
    def parts(self) -> frozenset[int]:
        return PARTS | {CAUGHT_PART} if self.mode == "caught" else PARTS

    def reach(self, stage: str) -> None:
        self.stage = stage
        self.times.setdefault(stage, asyncio.get_running_loop().time())
        hook = self.hooks.pop(stage, None)
        if hook is not None:
            hook()

    def took(self, since: str, until: str) -> float | None:
        if since in self.times and until in self.times:
            return self.times[until] - self.times[since]
        return None


@dataclass
class Books:
    """What the callbacks did, by block."""

    blocks: dict[int, Block] = field(default_factory=dict)
    sync_ran: Counter = field(default_factory=Counter)
    async_ran: Counter = field(default_factory=Counter)  # started
    async_wrote: set[int] = field(default_factory=set)  # its Callback row's query returned
    async_failed: dict[int, BaseException] = field(default_factory=dict)

    def sync_callback(self, number: int) -> None:
        self.sync_ran[number] += 1
        self.blocks[number].reach("callbacks")

    async def async_callback(self, number: int) -> None:
        self.async_ran[number] += 1
        try:
            await Callback.objects.acreate(block=number)
        except BaseException as exc:
            self.async_failed[number] = exc
            raise
        self.async_wrote.add(number)


async def run_block(block: Block, books: Books) -> None:
    """The block itself: six pieces in four statements, a savepoint, two callbacks."""
    n = block.number
    block.reach("begin")  # then waiting for a connection, BEGIN
    try:
        async with aatomic():
            block.reach("statements")
            await Piece.objects.acreate(block=n, part=0)
            transaction.on_commit(functools.partial(books.sync_callback, n))
            await Piece.objects.abulk_create([Piece(block=n, part=1), Piece(block=n, part=2)])
            async with aatomic():
                await Piece.objects.acreate(block=n, part=3)
                transaction.on_commit(functools.partial(books.async_callback, n))
            if block.mode == "caught":
                try:
                    async with asyncio.timeout(CAUGHT_TIMEOUT):
                        await native(slow_insert)(n)
                except TimeoutError as exc:
                    block.caught = exc  # caught, and the block goes on
            await asyncio.sleep(0)
            last = [Piece(block=n, part=4), Piece(block=n, part=5, commit_ms=block.commit_ms)]
            await Piece.objects.abulk_create(last)
            block.reach("committing")  # the last statement has returned: COMMIT next
        block.reach("done")
    except BaseException as exc:
        block.error = exc
        raise
    finally:
        block.times.setdefault("ended", asyncio.get_running_loop().time())


async def drive(block: Block, books: Books) -> None:
    """The block as its mode runs it (the block's task)."""
    if block.mode == "timeout":
        async with asyncio.timeout(block.delay):
            await run_block(block, books)
    elif block.mode == "wait_for":
        await asyncio.wait_for(run_block(block, books), block.delay)
    elif block.mode == "group":

        async def sibling() -> None:
            await asyncio.sleep(block.delay)
            raise SiblingFailed

        async with asyncio.TaskGroup() as group:
            group.create_task(run_block(block, books))
            group.create_task(sibling())
    else:
        await run_block(block, books)


class Cancels:
    """Scenario 9's blocks, the cancels it sends them, and its books."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.tally = run.tally
        self.random = random.Random(f"9-{run.vendor}")
        self.books = Books()
        self.slow_commit = run.vendor in ("postgresql", "pgbouncer")
        self.failures: Counter = Counter()  # (mode, error kind) -> blocks
        self.failure_example: dict[tuple[str, str], str] = {}

    async def one(self, block: Block) -> None:
        """Run one block in a task of its own, cancel it as its mode says, classify how it ended."""
        loop = asyncio.get_running_loop()
        self.books.blocks[block.number] = block
        drive_it = self.run.bounded(drive(block, self.books), BLOCK_LIMIT)
        task = self.run.spawn(drive_it, name=f"block-{block.number}")
        timers: list[asyncio.TimerHandle] = []

        def cancel() -> None:
            if not task.done():
                block.at_cancel = block.stage
                task.cancel()

        if block.mode in ("cancel", "commit"):
            block.hooks[block.anchor] = lambda: timers.append(loop.call_later(block.delay, cancel))
        await asyncio.wait([task])
        for timer in timers:
            timer.cancel()
        self.classify(block, task)

    def classify(self, block: Block, task: asyncio.Task) -> None:
        if task.cancelled():
            block.outcome = "cancelled"
        elif (exc := task.exception()) is None:
            block.outcome = "returned"
        elif isinstance(exc, Hung):
            block.outcome = "hung"  # counted by run.bounded
        elif isinstance(exc, TimeoutError) and block.mode in ("timeout", "wait_for"):
            block.outcome = "timed out"
        elif (
            isinstance(exc, BaseExceptionGroup)
            and block.mode == "group"
            and exc.split(SiblingFailed)[1] is None
        ):
            block.outcome = "sibling failed"
        elif isinstance(exc, TransactionManagementError) and block.mode == "caught" and block.caught:
            block.outcome = "refused"
        else:
            block.outcome = "failed"
            # Counted now, noted once per kind at the end (by mode, with an example).
            self.tally.unexpected += 1
            key = (block.mode, error_kind(exc))
            self.failures[key] += 1
            self.failure_example.setdefault(key, f"block {block.number}, at {block.stage}: {describe(exc)}")
        if block.outcome in EXPECTED:
            self.tally.expect(EXPECTED[block.outcome])
        # Keep what the audit needs, not the exception: its traceback holds frames.
        block.said = says(block.error)
        block.error_kind = error_kind(block.error) if block.error else ""
        block.error = None

    async def batch(self, blocks: list[Block]) -> None:
        """Run ``blocks``, ``IN_FLIGHT`` at a time."""
        pending = iter(blocks)

        async def worker() -> None:
            for block in pending:
                await self.one(block)

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))

    async def go(self) -> None:
        tally = self.tally
        total = QUICK_BLOCKS if self.run.quick else BLOCKS
        if self.slow_commit:
            await native(install_slow_commit)()

        baseline = [Block(n, "control") for n in range(BASELINE)]
        await self.batch(baseline)

        def median(since: str, until: str, default: float) -> float:
            took = [
                t for b in baseline if b.outcome == "returned" and (t := b.took(since, until)) is not None
            ]
            return statistics.median(took) if took else default

        whole = median("begin", "ended", 0.01)  # from the task's start
        body = median("statements", "callbacks", 0.005)  # the transaction: from BEGIN's answer to the commit
        commit = median("committing", "callbacks", 0.001)  # from the last statement's answer to a callback
        tally.figures.update(
            control_block_ms=round(whole * 1000, 2),
            control_body_ms=round(body * 1000, 2),
            control_commit_ms=round(commit * 1000, 3),
        )

        names, weights = list(MODES), list(MODES.values())
        blocks = []
        for n in range(BASELINE, total):
            block = Block(n, self.random.choices(names, weights)[0])
            if block.mode in ("timeout", "wait_for", "group"):
                block.delay = self.random.uniform(0, SPREAD * whole)
            elif block.mode == "cancel":
                # One in four from the task's start (waiting for a connection
                # or the lock, BEGIN), the others from inside the block.
                block.anchor = "begin" if self.random.random() < 0.25 else "statements"
                block.delay = self.random.uniform(0, SPREAD * (whole if block.anchor == "begin" else body))
            elif block.mode == "commit":
                block.anchor = "committing"
                if self.slow_commit:
                    block.commit_ms = SLOW_COMMIT_MS
                    block.delay = self.random.uniform(0, SLOW_COMMIT_MS / 1000 + commit)
                else:
                    block.delay = self.random.uniform(0, 1.5 * commit)
            blocks.append(block)
        await self.batch(blocks)

        tally.requests += total
        tally.faults += sum(b.mode != "control" for b in blocks)
        for (mode, kind), count in self.failures.most_common():
            tally.note(f"{count} {mode} blocks failed: {self.failure_example[mode, kind]}")
        await self.audit()

    async def audit(self) -> None:
        """The database and the callbacks against each block."""
        tally, books = self.tally, self.books
        pieces: dict[int, Counter] = defaultdict(Counter)
        async for number, part in Piece.objects.values_list("block", "part"):
            pieces[number][part] += 1
        callback_rows = Counter([n async for n in Callback.objects.values_list("block", flat=True)])
        blocks = books.blocks.values()
        committed = {n for n, parts in pieces.items() if parts}
        sync_ran, async_ran = set(books.sync_ran), set(books.async_ran)

        def broken(numbers, what: str) -> None:
            numbers = sorted(numbers)
            if numbers:
                tally.broken += len(numbers)
                examples = ", ".join(f"{n} ({books.blocks[n].mode})" for n in numbers[:EXAMPLES])
                tally.broken_what.append(f"{len(numbers)} blocks {what}: {examples}")

        broken(
            [b.number for b in blocks if b.number in pieces and set(pieces[b.number]) != b.parts],
            "committed only some of their pieces (not all or nothing)",
        )
        broken([n for n, parts in pieces.items() if max(parts.values()) > 1], "have a piece twice")
        broken(committed - sync_ran, "committed, but their sync on_commit callback never ran")
        broken(sync_ran - committed, "ran their sync on_commit callback, but did not commit")
        broken(committed - async_ran, "committed, but their async on_commit callback never ran")
        broken(async_ran - committed, "ran their async on_commit callback, but did not commit")
        twice = {n for n, times in (books.sync_ran + books.async_ran + callback_rows).items() if times > 1}
        broken({n for n in twice if books.sync_ran[n] > 1}, "ran their sync callback more than once")
        broken({n for n in twice if books.async_ran[n] > 1}, "ran their async callback more than once")
        broken({n for n in twice if callback_rows[n] > 1}, "have more than one Callback row")
        broken(set(callback_rows) - async_ran, "have a Callback row but no async callback ran")
        broken(books.async_wrote - set(callback_rows), "lost the Callback row their async callback wrote")
        broken(
            [b.number for b in blocks if b.outcome == "returned" and b.number not in committed],
            "returned normally but did not commit",
        )
        broken(
            [b.number for b in blocks if b.mode == "control" and b.outcome != "returned"],
            "were not cancelled, yet did not return",
        )
        broken(
            [b.number for b in blocks if b.mode == "caught" and b.caught and b.number in committed],
            "committed after catching the cancellation of one of their queries",
        )
        in_commit = [
            b
            for b in blocks
            if b.at_cancel == "committing" and b.number in committed and b.outcome == "cancelled"
        ]
        broken(
            [b.number for b in in_commit if b.said != "committed"],
            "were cancelled during their COMMIT and committed, but the CancelledError does not say so",
        )
        broken(
            [b.number for b in blocks if b.said == "committed" and b.number not in committed],
            "did not commit, but the exception their caller got says they did",
        )
        broken(
            [b.number for b in blocks if b.said == "rolled back" and b.number in committed],
            "committed, but the exception their caller got says they rolled back",
        )

        # Callback errors other than a cancellation: the outcome already counted them.
        failed = Counter(
            error_kind(exc)
            for exc in books.async_failed.values()
            if not isinstance(exc, asyncio.CancelledError)
        )
        outcomes = Counter(
            f"{b.mode}: {b.outcome}, {'committed' if b.number in committed else 'rolled back'}"
            for b in blocks
        )
        caught_next = Counter(
            b.error_kind or "nothing: the block committed" for b in blocks if b.mode == "caught" and b.caught
        )
        tally.figures.update(
            blocks=len(books.blocks),
            committed=len(committed),
            rolled_back=len(books.blocks) - len(committed),
            outcomes=dict(sorted(outcomes.items())),
            cancels_landed=dict(Counter(b.at_cancel for b in blocks if b.at_cancel).most_common()),
            cancelled_in_commit_and_committed=len(in_commit),
            notes_said=dict(Counter(b.said for b in blocks if b.said).most_common()),
            caught_then=dict(caught_next.most_common()),
            callback_errors=dict(failed.most_common()),
        )


async def cancelled_blocks(run: Run) -> None:
    """``9``: cancels at random points inside blocks, COMMIT included: all or nothing, callbacks."""
    await Cancels(run).go()
