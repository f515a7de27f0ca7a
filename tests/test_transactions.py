"""aatomic(): Django's atomic() semantics in async code, across tasks."""

import asyncio

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models.signals import post_save
from django.test import AsyncClient

from tandem import TransactionEnded, aatomic, native
from tests.app.models import Author, Counter
from tests.db import backend_pid

pytestmark = pytest.mark.django_db(transaction=True)


async def names():
    return sorted([a.name async for a in Author.objects.all()])


async def test_commit_and_rollback_on_error():
    async with aatomic():
        await Author.objects.acreate(name="kept")
    with pytest.raises(ValueError):
        async with aatomic():
            await Author.objects.acreate(name="lost")
            raise ValueError
    assert await names() == ["kept"]


async def test_nested_blocks_are_savepoints():
    async with aatomic():
        await Author.objects.acreate(name="outer")
        with pytest.raises(IntegrityError):
            async with aatomic():
                await Counter.objects.acreate(name="dup")
                await Counter.objects.acreate(name="dup")
        await Author.objects.acreate(name="after")  # the transaction is still usable
    assert await names() == ["after", "outer"]
    assert await Counter.objects.acount() == 0


async def test_savepoint_false_and_set_rollback():
    async with aatomic():
        await Author.objects.acreate(name="a")
        transaction.set_rollback(True)
    assert await names() == []
    async with aatomic():
        async with aatomic(savepoint=False):
            await Author.objects.acreate(name="b")
    assert await names() == ["b"]


async def test_durable_cannot_nest():
    async with aatomic(durable=True):
        await Author.objects.acreate(name="durable")
    with pytest.raises(RuntimeError, match="durable"):
        async with aatomic():
            async with aatomic(durable=True):
                pass


async def test_decorator_forms():
    @aatomic
    async def bare():
        await Author.objects.acreate(name="bare")
        return connection.in_atomic_block

    @aatomic(using="default")
    async def called():
        raise ValueError

    assert await bare() is True
    with pytest.raises(ValueError):
        await called()
    with pytest.raises(TypeError, match="async"):
        aatomic(lambda: None)


async def test_on_commit_sync_and_async_in_order_after_commit():
    order = []

    async def async_hook():
        await asyncio.sleep(0)
        order.append(("async", await Author.objects.acount()))

    async with aatomic():
        await Author.objects.acreate(name="x")
        transaction.on_commit(lambda: order.append("sync-1"))
        transaction.on_commit(async_hook)
        transaction.on_commit(lambda: order.append("sync-2"))
        assert order == []
    assert order == ["sync-1", ("async", 1), "sync-2"]


async def test_on_commit_dropped_on_rollback_and_robust_honoured():
    ran = []

    async def failing():
        raise ValueError("hook failed")

    async with aatomic():
        async with aatomic():
            transaction.on_commit(lambda: ran.append("rolled back"))
            transaction.set_rollback(True)
        transaction.on_commit(failing, robust=True)
        transaction.on_commit(lambda: ran.append("after robust"))
    assert ran == ["after robust"]
    with pytest.raises(ValueError, match="hook failed"):
        async with aatomic():
            transaction.on_commit(failing)


async def test_sync_atomic_inside_native():
    def work():
        with transaction.atomic():
            Author.objects.create(name="sync")
            with transaction.atomic():
                Author.objects.create(name="inner")
                transaction.set_rollback(True)
        return connection.in_atomic_block

    assert await native(work)() is False
    assert await names() == ["sync"]


async def test_child_tasks_join_the_transaction_and_roll_back_with_it():
    with pytest.raises(ZeroDivisionError):
        async with aatomic():
            await asyncio.gather(*(Author.objects.acreate(name=f"child{i}") for i in range(5)))
            async with asyncio.TaskGroup() if hasattr(asyncio, "TaskGroup") else _Group() as group:
                group.create_task(Author.objects.acreate(name="grouped"))
            assert await Author.objects.acount() == 6  # visible inside the transaction
            raise ZeroDivisionError
    assert await names() == []


class _Group:  # Python 3.10 has no TaskGroup
    async def __aenter__(self):
        self.tasks = []
        return self

    def create_task(self, coro):
        self.tasks.append(asyncio.ensure_future(coro))

    async def __aexit__(self, *exc):
        await asyncio.gather(*self.tasks)


async def test_child_tasks_serialise_on_the_transaction_connection():
    async with aatomic():
        pids = await asyncio.gather(*(native(backend_pid)("default", 0.01) for _ in range(5)))
        assert len(set(pids)) == 1


async def test_child_nested_blocks_nest_properly():
    async def child(i):
        async with aatomic():
            await Author.objects.acreate(name=f"c{i}")
            await asyncio.sleep(0.01)
            if i % 2:
                transaction.set_rollback(True)

    async with aatomic():
        await asyncio.gather(*(child(i) for i in range(6)))
    assert await names() == ["c0", "c2", "c4"]


async def test_task_outliving_its_block_gets_a_clear_error_and_writes_nothing():
    go = asyncio.Event()

    async def late_writer():
        await go.wait()
        await Author.objects.acreate(name="too late")

    async with aatomic():
        task = asyncio.create_task(late_writer())
    go.set()
    with pytest.raises(TransactionEnded, match="has ended"):
        await task
    assert await names() == []


async def test_100_concurrent_transactions_never_see_each_others_uncommitted_rows():
    async def worker(i):
        async with aatomic():
            await Author.objects.acreate(name=f"w{i}")
            await asyncio.sleep(0.01)  # let the others write meanwhile
            seen = [name async for name in Author.objects.values_list("name", flat=True)]
            transaction.set_rollback(True)  # nothing is ever committed...
            return i, seen

    results = await asyncio.gather(*(worker(i) for i in range(100)))
    # ...so each block must have seen exactly its own row.
    assert all(seen == [f"w{i}"] for i, seen in results)
    assert await Author.objects.acount() == 0


async def test_aatomic_on_a_stock_alias_is_refused():
    with pytest.raises(transaction.TransactionManagementError, match="tandem backend"):
        async with aatomic(using="stock"):
            pass


async def test_atomic_requests_for_async_views(settings):
    settings.DATABASES["default"]["ATOMIC_REQUESTS"] = True
    try:
        client = AsyncClient()
        with pytest.raises(ValueError, match="boom"):
            await client.get("/fail/?name=rolled-back")
        response = await client.get("/create/?name=committed")
        assert response.status_code == 200
        response = await client.get("/create-non-atomic/?name=free")
        assert response.json()["in_atomic"] is False
    finally:
        settings.DATABASES["default"]["ATOMIC_REQUESTS"] = False
    assert await names() == ["committed", "free"]


async def _with_async_receiver(action):
    seen = []

    async def receiver(sender, instance, **kwargs):
        seen.append(await Author.objects.filter(pk=instance.pk).aexists())

    post_save.connect(receiver, sender=Author)
    try:
        await asyncio.wait_for(action(), 5)  # a deadlock would time out here
    finally:
        post_save.disconnect(receiver, sender=Author)
    return seen


async def test_async_receiver_sees_the_senders_transaction():
    async def save_in_block():
        async with aatomic():
            await Author.objects.acreate(name="owner")

    assert await _with_async_receiver(save_in_block) == [True]


async def test_async_receiver_of_a_save_by_a_joined_task():
    async def save_from_child():
        async with aatomic():
            await asyncio.create_task(Author.objects.acreate(name="child"))

    assert await _with_async_receiver(save_from_child) == [True]


async def test_on_commit_outside_a_transaction_runs_now():
    ran = []

    async def async_hook():
        ran.append("async")

    transaction.on_commit(lambda: ran.append("sync"))  # a task that never connected
    transaction.on_commit(async_hook)
    await asyncio.sleep(0.01)
    assert ran == ["sync", "async"]


@pytest.mark.skipif(
    not connection.features.has_select_for_update_nowait, reason="the database has no row locks (SQLite)"
)
async def test_select_for_update_locks_across_tasks():
    author = await Author.objects.acreate(name="locked")
    locked, done = asyncio.Event(), asyncio.Event()

    async def holder():
        async with aatomic():
            await Author.objects.select_for_update().aget(pk=author.pk)
            locked.set()
            await done.wait()

    task = asyncio.create_task(holder())
    await asyncio.wait_for(locked.wait(), 10)
    with pytest.raises(DatabaseError):
        async with aatomic():
            await Author.objects.select_for_update(nowait=True).aget(pk=author.pk)
    done.set()
    await task
    async with aatomic():  # free again
        assert (await Author.objects.select_for_update(nowait=True).aget(pk=author.pk)).pk == author.pk


async def test_sync_receivers_of_asend_join_the_senders_transaction():
    from django.dispatch import Signal

    signal = Signal()

    def receiver(sender, **kwargs):  # sync: Django runs it with sync_to_async
        Author.objects.create(name="by a sync receiver")

    signal.connect(receiver, weak=False)
    try:
        with pytest.raises(RuntimeError):
            async with aatomic():
                await signal.asend(sender=None)
                assert await Author.objects.filter(name="by a sync receiver").aexists()
                raise RuntimeError("roll back")
    finally:
        signal.disconnect(receiver)
    assert await names() == []  # the receiver's row rolled back with the block
