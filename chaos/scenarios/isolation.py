"""Scenario 5: isolation, with 200 concurrent money transfers over 20 accounts.

Every transfer runs in ``tandem.aatomic``, locks its accounts with
``select_for_update`` in a fixed order (by primary key), reads their
balances, writes the new ones and a ``Transfer`` row. Meanwhile reader tasks
sum all balances in transactions of their own, again and again. What must
hold:

* the total is conserved: every reader's sum, every time, is the initial
  total, and no reader ever sees a row of a transaction that rolls back;
* rollback semantics: the transfers meant to fail raise in the middle of the
  transaction (after half their writes); their writes vanish, so at the end
  each account's balance is exactly its initial balance plus the transfers
  that committed, and the ``Transfer`` rows are exactly theirs;
* ``5b``: the same with savepoints (a nested ``aatomic`` that fails rolls back
  only itself; one that succeeds commits with its outer block, or rolls back
  with it);
* ``5c``: the same with child tasks, as docs/concepts/transactions.md
  promises: tasks created inside a block join its transaction (same
  connection, they see its uncommitted rows, their writes commit or roll back
  with it; a child's own ``aatomic`` is a savepoint), and a task that outlives
  the block gets ``tandem.TransactionEnded`` and writes nothing.

SQLite has no row locks (``select_for_update`` does nothing there); its
transactions take the write lock at ``BEGIN`` (tandem's ``IMMEDIATE``
default), so writers are serialised instead. A deadlock or lock timeout, if
the server reports one, is retried and counted as an expected failure.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict

from django.db import DatabaseError, transaction
from django.db.models import Count, Sum

from chaos.app.models import Account, Transfer
from chaos.books import Hung, Run
from chaos.scenarios.common import connection_id, error_kind
from tandem import TransactionEnded, aatomic, native

ACCOUNTS = 20
INITIAL = 1000
TOTAL = ACCOUNTS * INITIAL
TASKS, QUICK_TASKS = 200, 80  # transfers in flight at once
ROUNDS, QUICK_ROUNDS = 5, 1  # times that many run, one batch after the other
READERS = 2
RETRIES = 5
TASK_LIMIT = 60.0


class Doomed(Exception):  # noqa: N818 - raised on purpose, not an error
    """Raised on purpose inside a transaction: its writes must vanish."""


def accounts_seed() -> list[Account]:
    """The accounts every isolation scenario starts from."""
    return [Account(id=pk, balance=INITIAL) for pk in range(1, ACCOUNTS + 1)]


def _retryable(exc: DatabaseError) -> bool:
    cause = exc.__cause__
    code = getattr(cause, "sqlstate", None) or (cause.args[0] if cause and cause.args else None)
    # PostgreSQL: deadlock_detected, lock_not_available; MySQL: ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT
    return code in ("40P01", "55P03", 1213, 1205)


class Ledger:
    """What the committed transfers did, to check the database against."""

    def __init__(self) -> None:
        self.deltas: dict[int, int] = defaultdict(int)
        self.rows: Counter = Counter()  # Transfer rows committed, by kind

    def commit(self, moves: list[tuple[int, int, int, str]]) -> None:
        for src, dst, amount, kind in moves:
            self.deltas[src] -= amount
            self.deltas[dst] += amount
            self.rows[kind] += 1


async def lock(*pks: int) -> dict[int, int]:
    """Lock the accounts in primary-key order; their balances."""
    query = Account.objects.select_for_update().filter(pk__in=pks).order_by("pk")
    return {account.pk: account.balance async for account in query}


async def set_balance(pk: int, balance: int) -> None:
    await Account.objects.filter(pk=pk).aupdate(balance=balance)


class Bench:
    """A scenario's transfers, readers and books."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.tally = run.tally
        self.ledger = Ledger()
        self.random = random.Random(f"{run.tally.key}-{run.vendor}")
        self.tasks = QUICK_TASKS if run.quick else TASKS
        self.rounds = QUICK_ROUNDS if run.quick else ROUNDS
        self.stop = asyncio.Event()
        self.reads = 0
        self.retries = 0

    def accounts(self, n: int) -> list[int]:
        return self.random.sample(range(1, ACCOUNTS + 1), n)

    async def reader(self) -> None:
        """Sum every balance in a transaction, again and again: always the initial total."""
        while not self.stop.is_set():
            try:
                async with aatomic():
                    total = (await Account.objects.aaggregate(total=Sum("balance")))["total"]
                    seen = await Transfer.objects.filter(kind__endswith="doomed").acount()
            except DatabaseError as exc:
                if not _retryable(exc):
                    raise
                self.retries += 1
                self.tally.expect(error_kind(exc))
                continue
            self.reads += 1
            self.tally.check(total == TOTAL, f"a reader saw a total of {total}, not {TOTAL}")
            self.tally.check(not seen, f"a reader saw {seen} rows of transactions that roll back")
            await asyncio.sleep(0.002)

    async def attempt(self, name: str, body) -> bool:
        """Run ``body`` (one transaction), retrying deadlocks; True if it committed."""
        for _ in range(RETRIES):
            try:
                moves = await body()
            except Doomed:
                self.tally.expect("Doomed (raised on purpose inside the transaction)")
                return False
            except DatabaseError as exc:
                if not _retryable(exc):
                    raise
                self.retries += 1
                self.tally.expect(error_kind(exc))
                continue
            self.ledger.commit(moves)
            return True
        self.tally.fail(f"{name}: still deadlocked after {RETRIES} attempts")
        return False

    async def go(self, transfer) -> None:
        """Run the transfers and the readers, then check the books of the bank."""
        readers = [self.run.spawn(self.reader(), name=f"reader-{i}") for i in range(READERS)]
        for first in range(0, self.tasks * self.rounds, self.tasks):
            numbers = range(first, first + self.tasks)
            jobs = [
                self.run.spawn(self.run.bounded(transfer(i), TASK_LIMIT), name=f"transfer-{i}")
                for i in numbers
            ]
            for i, result in zip(numbers, await asyncio.gather(*jobs, return_exceptions=True), strict=True):
                if isinstance(result, BaseException) and not isinstance(result, Hung):
                    self.tally.fail_with(result, f"transfer {i}")
        self.stop.set()
        for result in await asyncio.gather(*readers, return_exceptions=True):
            if isinstance(result, BaseException):
                self.tally.fail_with(result, "reader")
        self.tally.requests += self.tasks * self.rounds + self.reads
        self.tally.check(self.reads > 0, "the readers never completed a read")
        await self.audit()

    async def audit(self) -> None:
        """The database against the ledger: balances, total, Transfer rows."""
        balances = {pk: balance async for pk, balance in Account.objects.values_list("pk", "balance")}
        expected = {pk: INITIAL + self.ledger.deltas.get(pk, 0) for pk in range(1, ACCOUNTS + 1)}
        wrong = {pk: (balances.get(pk), want) for pk, want in expected.items() if balances.get(pk) != want}
        self.tally.check(not wrong, f"balances differ from the committed transfers (got, want): {wrong}")
        self.tally.check(sum(balances.values()) == TOTAL, f"total {sum(balances.values())}, not {TOTAL}")
        rows = {
            kind: count
            async for kind, count in Transfer.objects.values_list("kind").annotate(n=Count("id")).order_by()
        }
        self.tally.check(
            rows == {k: v for k, v in self.ledger.rows.items() if v},
            f"Transfer rows by kind {rows}, committed {dict(self.ledger.rows)}",
        )
        self.tally.figures.update(
            committed_legs=sum(self.ledger.rows.values()),
            reads=self.reads,
            deadlock_retries=self.retries,
            transfer_rows=rows,
        )


async def transfers(run: Run) -> None:
    """``5a``: plain transfers; one in five raises after debiting, before crediting."""
    bench = Bench(run)

    async def transfer(i: int) -> None:
        src, dst = bench.accounts(2)
        amount = bench.random.randint(1, 50)
        doomed = i % 5 == 4
        kind = "doomed" if doomed else "plain"
        if doomed:
            run.tally.faults += 1

        async def body():
            async with aatomic():
                balances = await lock(src, dst)
                await set_balance(src, balances[src] - amount)
                await Transfer.objects.acreate(task=i, src=src, dst=dst, amount=amount, kind=kind)
                await asyncio.sleep(0.001)  # others run meanwhile: they must not see this half
                if doomed:
                    raise Doomed
                await set_balance(dst, balances[dst] + amount)
            return [(src, dst, amount, kind)]

        await bench.attempt(f"transfer {i}", body)

    await bench.go(transfer)


async def savepoints(run: Run) -> None:
    """``5b``: a transfer in the outer block and one in a nested block (a savepoint).

    One in three nested blocks fails (only it rolls back); one in seven outer
    blocks fails after its nested one (everything rolls back).
    """
    bench = Bench(run)

    async def transfer(i: int) -> None:
        a, b, c = bench.accounts(3)
        x, y = bench.random.randint(1, 50), bench.random.randint(1, 50)
        inner_fails, outer_fails = i % 3 == 1, i % 7 == 6
        outer_kind = "outer-doomed" if outer_fails else "outer"
        inner_kind = "inner-doomed" if inner_fails or outer_fails else "inner"
        run.tally.faults += inner_fails + outer_fails

        async def body():
            moves = []
            async with aatomic():
                balances = await lock(a, b, c)
                await set_balance(a, balances[a] - x)
                await set_balance(b, balances[b] + x)
                await Transfer.objects.acreate(task=i, src=a, dst=b, amount=x, kind=outer_kind)
                moves.append((a, b, x, outer_kind))
                try:
                    async with aatomic():
                        await set_balance(b, balances[b] + x - y)
                        await Transfer.objects.acreate(task=i, src=b, dst=c, amount=y, kind=inner_kind)
                        await asyncio.sleep(0.001)
                        if inner_fails:
                            raise Doomed
                        await set_balance(c, balances[c] + y)
                    moves.append((b, c, y, inner_kind))
                except Doomed:
                    run.tally.expect("Doomed (raised on purpose inside a savepoint)")
                    after = await Account.objects.aget(pk=b)
                    run.tally.check(
                        after.balance == balances[b] + x,
                        f"transfer {i}: after its savepoint rolled back, account {b} has "
                        f"{after.balance}, not {balances[b] + x}",
                    )
                if outer_fails:
                    raise Doomed
            return moves

        await bench.attempt(f"transfer {i}", body)

    await bench.go(transfer)


async def child_tasks(run: Run) -> None:
    """``5c``: the transfer's writes are made by tasks created inside the block.

    In each block: two children move the money, one checks it sees the
    block's uncommitted row, and one opens its own ``aatomic`` (a savepoint),
    writes and rolls back. All of them must be on the block's connection. One
    block in five then fails (every child's write rolls back with it); one in
    ten leaves a child running past its end: that child's query must raise
    ``TransactionEnded`` and write nothing.
    """
    bench = Bench(run)
    late_children: list[asyncio.Task] = []

    async def transfer(i: int) -> None:
        src, dst = bench.accounts(2)
        amount = bench.random.randint(1, 50)
        doomed, leaves_one_behind = i % 5 == 4, i % 10 == 0
        kind = "doomed" if doomed else "child"
        run.tally.faults += doomed + leaves_one_behind

        async def sees(pk: int) -> int:
            run.tally.check(
                await Transfer.objects.filter(pk=pk).aexists(),
                f"transfer {i}: a child task does not see its block's uncommitted row",
            )
            return await native(connection_id)()

        async def nested_and_rolled_back() -> int:
            async with aatomic():
                await Transfer.objects.acreate(task=i, src=src, dst=dst, amount=0, kind="child-doomed")
                used = await native(connection_id)()
                transaction.set_rollback(True)
            return used

        async def late(go: asyncio.Event) -> None:
            await go.wait()
            await Transfer.objects.acreate(task=i, src=src, dst=dst, amount=0, kind="late")

        async def debit(balance: int) -> int:
            await set_balance(src, balance - amount)
            return await native(connection_id)()

        async def credit(balance: int) -> int:
            await set_balance(dst, balance + amount)
            return await native(connection_id)()

        go = asyncio.Event()
        left_behind: list[asyncio.Task] = []

        async def body():
            async with aatomic():
                block_connection = await native(connection_id)()
                balances = await lock(src, dst)
                row = await Transfer.objects.acreate(task=i, src=src, dst=dst, amount=amount, kind=kind)
                async with asyncio.TaskGroup() as group:
                    children = [
                        group.create_task(debit(balances[src])),
                        group.create_task(credit(balances[dst])),
                        group.create_task(sees(row.pk)),
                        group.create_task(nested_and_rolled_back()),
                    ]
                used = {child.result() for child in children}
                run.tally.check(
                    used == {block_connection},
                    f"transfer {i}: children used connections {used}, not the block's {block_connection}",
                )
                if leaves_one_behind:
                    left_behind.append(asyncio.create_task(late(go), name=f"late-child-{i}"))
                    late_children.append(left_behind[-1])
                if doomed:
                    raise Doomed
            return [(src, dst, amount, kind)]

        try:
            await bench.attempt(f"transfer {i}", body)
        finally:
            go.set()
        for child in left_behind:
            try:
                await child
            except TransactionEnded:
                run.tally.expect("tandem.TransactionEnded (a child task outlived its block)")
            except BaseException as exc:
                run.tally.fail_with(exc, f"transfer {i}'s late child")
            else:
                run.tally.fail(f"transfer {i}: a child that outlived its block could still write")

    await bench.go(transfer)
    leftover = await Transfer.objects.filter(kind__in=("late", "child-doomed")).acount()
    run.tally.check(not leftover, f"{leftover} rows written by late children or rolled-back savepoints")
    run.tally.figures["late_children"] = len(late_children)
