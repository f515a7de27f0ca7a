"""The transaction rule: nothing written inside a rolled-back aatomic() survives it.

While a task has a block open, every query on the block's alias by the task
or by what it starts runs inside the transaction or fails at once: threads
(thread-sensitive ``sync_to_async`` joins; ``thread_sensitive=False`` and
``asyncio.to_thread`` raise ``TransactionInThread``), signal receivers,
cancelled queries (the block must roll back), cancellations during COMMIT
(the commit is reported, its callbacks run), ``on_commit`` callbacks that
start tasks, one ``aatomic`` instance in several tasks. Each test runs in
production mode (``transaction=True``: tasks own pooled connections) and, where the
case applies, under ``TestCase`` (every task shares the test's connection).
"""

import asyncio

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.contrib.auth import alogin
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.db import connections, transaction
from django.db.models.signals import post_save
from django.dispatch import Signal
from django.test import AsyncClient, AsyncRequestFactory, TestCase

from tandem import TransactionInThread, aatomic, await_, in_bridge, native
from tests.app.models import Author, Counter
from tests.db import long_query
from tests.settings import TEST_DB

production = pytest.mark.django_db(transaction=True)


class Boom(Exception):  # noqa: N818 - raised on purpose
    pass


def committed_names() -> list[str]:
    """Author names as a fresh connection in a plain thread sees them (committed rows)."""

    def read():
        try:
            return sorted(Author.objects.values_list("name", flat=True))
        finally:
            connections.close_all()

    return read


async def seen_from_outside() -> list[str]:
    return await asyncio.to_thread(committed_names())


# -- threads started inside the block --------------------------------------------
async def _thread_sensitive_write_in_rolled_back_block():
    where = []

    def write():
        where.append(in_bridge())
        Author.objects.create(name="thread-sensitive")

    with pytest.raises(Boom):
        async with aatomic():
            await sync_to_async(write)()
            assert await Author.objects.filter(name="thread-sensitive").aexists()  # same transaction
            raise Boom
    return where


async def _other_threads_refused():
    refusals = []
    for start in (
        lambda fn: sync_to_async(fn, thread_sensitive=False)(),
        lambda fn: asyncio.to_thread(fn),
    ):
        with pytest.raises(Boom):
            async with aatomic():
                with pytest.raises(TransactionInThread, match=r"tandem\.native") as refused:
                    await start(lambda: Author.objects.create(name="in a thread"))
                refusals.append(refused.value)
                raise Boom
    return refusals


@production
async def test_thread_sensitive_sync_to_async_joins_the_block():
    assert await _thread_sensitive_write_in_rolled_back_block() == [True]
    assert await seen_from_outside() == []


@production
async def test_threads_that_cannot_join_are_refused_at_once():
    assert len(await _other_threads_refused()) == 2
    assert await seen_from_outside() == []
    # Outside any block the same threads work as in stock Django.
    await asyncio.to_thread(committed_names())
    await sync_to_async(lambda: Author.objects.create(name="free"), thread_sensitive=False)()
    assert await seen_from_outside() == ["free"]


class ThreadsUnderTestCase(TestCase):
    async def test_the_same_rule_as_production(self):
        assert await _thread_sensitive_write_in_rolled_back_block() == [True]
        assert len(await _other_threads_refused()) == 2
        assert await Author.objects.acount() == 0


# -- signal receivers --------------------------------------------------------------
async def _asend_after_the_request_used_its_thread():
    signal = Signal()

    def receiver(sender, **kwargs):
        Author.objects.create(name="receiver")

    signal.connect(receiver, weak=False)
    async with ThreadSensitiveContext():
        await sync_to_async(lambda: None)()  # the request now has a thread of its own
        with pytest.raises(Boom):
            async with aatomic():
                await signal.asend(sender=None)
                assert await Author.objects.filter(name="receiver").aexists()
                raise Boom


@production
async def test_asend_sync_receivers_write_inside_the_block_after_the_request_used_its_thread():
    await _asend_after_the_request_used_its_thread()
    assert await seen_from_outside() == []


class SignalsUnderTestCase(TestCase):
    async def test_the_same_rule_as_production(self):
        await _asend_after_the_request_used_its_thread()
        assert await Author.objects.acount() == 0


@production
async def test_alogin_inside_a_block_that_holds_the_user_row():
    user = await User.objects.acreate(username="u")
    request = AsyncRequestFactory().get("/")
    request.session = SessionStore()
    async with ThreadSensitiveContext():
        await sync_to_async(lambda: None)()
        with pytest.raises(Boom):
            async with asyncio.timeout(30):  # a deadlock would hang here
                async with aatomic():
                    locked = await User.objects.select_for_update().aget(pk=user.pk)
                    await alogin(request, locked)
                    raise Boom
    await user.arefresh_from_db()
    assert user.last_login is None  # rolled back with the block


# -- cancellation inside the block ----------------------------------------------------
async def _cancelled_query_then_continue():
    ran = []
    with pytest.raises(transaction.TransactionManagementError, match="An error occurred"):
        async with aatomic():
            await Author.objects.acreate(name="before")
            transaction.on_commit(lambda: ran.append("callback"))
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await native(long_query)()
            await Author.objects.acreate(name="after")  # the block must not go on
    return ran


@production
async def test_a_cancelled_query_marks_the_block_for_rollback():
    assert await _cancelled_query_then_continue() == []
    assert await seen_from_outside() == []


@production
async def test_a_cancelled_block_that_stops_querying_fails_at_its_end():
    ran = []
    with pytest.raises(transaction.TransactionManagementError, match="was rolled back") as failed:
        async with aatomic():
            await Author.objects.acreate(name="before")
            transaction.on_commit(lambda: ran.append("callback"))
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await native(long_query)()
    assert isinstance(failed.value.__cause__, asyncio.CancelledError)
    assert ran == []
    assert await seen_from_outside() == []
    async with aatomic():  # the next block of the task is not affected
        transaction.set_rollback(True)
    async with aatomic():
        await Author.objects.acreate(name="next")
    assert await seen_from_outside() == ["next"]


@production
async def test_an_atomic_request_that_swallows_a_cancelled_query_fails(settings):
    settings.DATABASES["default"]["ATOMIC_REQUESTS"] = True
    try:
        with pytest.raises(transaction.TransactionManagementError, match="was rolled back"):
            await AsyncClient().get("/time-out/?name=lost")
    finally:
        settings.DATABASES["default"]["ATOMIC_REQUESTS"] = False
    assert await seen_from_outside() == []


@production
async def test_a_cancelled_unit_that_did_no_database_io_leaves_the_block_alone():
    # A cache call or any other bridged wait timed out inside the block: the
    # transaction is intact, and the block commits as usual.
    async with aatomic():
        await Author.objects.acreate(name="kept")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await native(lambda: await_(asyncio.sleep(5)))()
        await Author.objects.acreate(name="after")
    assert await seen_from_outside() == ["after", "kept"]


@production
async def test_a_cancelled_savepoint_rolls_back_alone():
    async with aatomic():
        await Author.objects.acreate(name="kept")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                async with aatomic():
                    await Author.objects.acreate(name="inner")
                    await native(long_query)()
        await Author.objects.acreate(name="after")
    assert await seen_from_outside() == ["after", "kept"]


class CancelUnderTestCase(TestCase):
    async def test_the_same_rule_as_production(self):
        assert await _cancelled_query_then_continue() == []
        assert await Author.objects.acount() == 0  # the test's transaction goes on


# -- cancellation while COMMIT is in flight -------------------------------------------
def _cancel_when_committing(task: asyncio.Task):
    """Make the block's wrapper cancel ``task`` as its COMMIT is sent (then commit)."""

    def arm():
        wrapper = connections["default"]
        commit = wrapper._commit

        def cancel_then_commit():
            task.get_loop().call_soon(task.cancel)  # lands while the COMMIT is awaited
            del wrapper._commit
            return commit()

        wrapper._commit = cancel_then_commit

    return arm


@production
async def test_cancelled_during_commit_the_commit_is_reported_and_callbacks_run():
    ran = []

    async def async_hook():
        ran.append(("async", await Author.objects.acount()))

    with pytest.raises(asyncio.CancelledError) as cancelled:
        async with aatomic():
            await Author.objects.acreate(name="committed")
            transaction.on_commit(lambda: ran.append("sync"))
            transaction.on_commit(async_hook)
            await native(_cancel_when_committing(asyncio.current_task()))()
    assert "committed, and its on_commit callbacks ran" in str(cancelled.value.__notes__)
    assert ran == ["sync", ("async", 1)]
    assert await seen_from_outside() == ["committed"]


@production
async def test_cancelled_during_rollback_the_connection_is_left_clean():
    with pytest.raises(asyncio.CancelledError) as cancelled:
        async with aatomic():
            await Author.objects.acreate(name="lost")
            wrapper = await native(lambda: connections["default"])()
            rollback = wrapper._rollback

            def cancel_then_rollback():
                task.get_loop().call_soon(task.cancel)
                del wrapper._rollback
                return rollback()

            task = asyncio.current_task()
            wrapper._rollback = cancel_then_rollback
            raise Boom
    assert "rolled back" in str(cancelled.value.__notes__)
    assert not wrapper.in_atomic_block
    async with aatomic():  # the task goes on with a clean connection
        await Author.objects.acreate(name="next")
    assert await seen_from_outside() == ["next"]


@production
@pytest.mark.skipif(TEST_DB != "postgresql", reason="a COMMIT made slow by a deferred trigger: PostgreSQL")
async def test_a_cancellation_waits_for_a_slow_commit_no_longer_than_the_grace(monkeypatch):
    monkeypatch.setattr("tandem.transaction.COMMIT_GRACE", 0.3)

    def slow_commits(install: bool):
        with connections["default"].cursor() as cursor:
            if install:
                cursor.execute(
                    "CREATE FUNCTION tandem_slow() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$"
                )
                cursor.execute(
                    "CREATE CONSTRAINT TRIGGER tandem_slow AFTER INSERT ON app_author "
                    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION tandem_slow()"
                )
            else:
                cursor.execute("DROP TRIGGER tandem_slow ON app_author")
                cursor.execute("DROP FUNCTION tandem_slow()")

    await native(slow_commits)(True)
    try:
        with pytest.raises(asyncio.CancelledError) as cancelled:
            async with aatomic():
                await Author.objects.acreate(name="never committed")
                await native(_cancel_when_committing(asyncio.current_task()))()
    finally:
        await native(slow_commits)(False)
    assert "whether it committed is unknown" in str(cancelled.value.__notes__)
    # The COMMIT was cancelled on the server, not left to finish in 60 s.
    assert await seen_from_outside() == []
    async with aatomic():  # the task's next block gets a clean connection
        await Author.objects.acreate(name="next")
    assert await seen_from_outside() == ["next"]


# -- on_commit callbacks run after the transaction is gone ----------------------------
@production
async def test_on_commit_callbacks_that_start_tasks_do_not_hang():
    async def note_on_save(sender, instance, created, **kwargs):
        if instance.name == "saved by a callback":
            await Counter.objects.acreate(name="from an async receiver")

    async def gathers():
        await asyncio.gather(*(Author.objects.acreate(name=f"gathered {i}") for i in range(3)))

    post_save.connect(note_on_save, sender=Author)
    try:
        async with asyncio.timeout(30):
            async with aatomic():
                await Author.objects.acreate(name="x")
                transaction.on_commit(lambda: Author.objects.create(name="saved by a callback"))
                transaction.on_commit(gathers)
    finally:
        post_save.disconnect(note_on_save, sender=Author)
    assert len(await seen_from_outside()) == 5
    assert await Counter.objects.filter(name="from an async receiver").aexists()


# -- one aatomic instance, several tasks ------------------------------------------------
async def _shared_instance():
    block = aatomic()

    async def fails():
        with pytest.raises(Boom):
            async with block:
                await Author.objects.acreate(name="A")
                await asyncio.sleep(0.05)
                raise Boom

    async def commits():
        await asyncio.sleep(0.01)
        async with block:
            await Author.objects.acreate(name="B")
            await asyncio.sleep(0.1)
            await Author.objects.acreate(name="B2")

    await asyncio.gather(fails(), commits())
    return sorted([name async for name in Author.objects.values_list("name", flat=True)])


@production
async def test_one_instance_entered_by_two_tasks_at_once():
    assert await _shared_instance() == ["B", "B2"]


class IndependentBlocksUnderTestCase(TestCase):
    async def test_two_tasks_blocks_stay_independent(self):
        assert await _shared_instance() == ["B", "B2"]  # as in production

    async def test_capture_on_commit_callbacks_awaits_async_callbacks(self):
        async def callback():
            await Counter.objects.acreate(name="from the callback")

        async with self.captureOnCommitCallbacks(execute=True) as callbacks:
            async with aatomic():
                await Author.objects.acreate(name="x")
                transaction.on_commit(callback)
        assert len(callbacks) == 1
        assert await Counter.objects.filter(name="from the callback").aexists()

    async def test_a_plain_with_says_to_use_async_with(self):
        async def callback():
            pass

        with pytest.raises(RuntimeError, match=r"async with self\.captureOnCommitCallbacks"):
            with self.captureOnCommitCallbacks(execute=True):
                transaction.on_commit(callback)
