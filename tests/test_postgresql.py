"""Django's PostgreSQL backend features keep working through the bridge."""

import asyncio
import datetime

import psycopg
import pytest
from django.db import connection, connections, transaction

from tandem import native
from tests.app.models import Author, Book
from tests.settings import POSTGRES_URL

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "tuned"]),
    pytest.mark.skipif(connections["default"].vendor != "postgresql", reason="PostgreSQL backend features"),
]


@pytest.fixture(scope="module", autouse=True)
def assumed_role():
    # Roles are server-wide; the "tuned" alias does SET ROLE tandem_assumed.
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(
            "DO $$ BEGIN CREATE ROLE tandem_assumed; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )


def _tuned_session():
    # The isolation level applies to transactions (psycopg sets it at BEGIN).
    with transaction.atomic(using="tuned"), connections["tuned"].cursor() as cursor:
        cursor.execute("SELECT current_user, current_setting('transaction_isolation')")
        return cursor.fetchone(), connections["tuned"].connection.prepare_threshold


async def test_options_isolation_level_role_binding_and_prepare_threshold():
    (user, isolation), threshold = await native(_tuned_session)()
    assert user == "tandem_assumed"
    assert isolation == "serializable"
    assert threshold == 0


async def test_pg_version_probe_connects_from_inside_the_bridge():
    def probe():
        wrapper = connections["default"]
        wrapper.__dict__.pop("pg_version", None)  # a cached_property: force the probe
        return wrapper.pg_version, wrapper.get_database_version()

    version, (major, _minor) = await native(probe)()
    assert version >= 120000 and major >= 12


async def test_timezone_aware_datetimes_round_trip():
    author = await Author.objects.acreate(name="tz")
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    await Book.objects.acreate(title="t", author=author, published=moment)
    fetched = await Book.objects.aget(title="t")
    assert fetched.published == moment and fetched.published.tzinfo is not None


async def test_server_side_cursor_inside_native():
    await Author.objects.abulk_create([Author(name=f"a{i}") for i in range(25)])

    def stream():
        return [a.name for a in Author.objects.order_by("pk").iterator(chunk_size=4)]

    assert len(await native(stream)()) == 25
    await asyncio.sleep(0)  # the task waits on something else: its connection goes back
    assert connection.connection is None  # (unpinned once the cursor closed)


def test_sync_connection_is_a_bridged_psycopg_connection_that_blocks_normally():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert type(connection.connection).__name__ == "BridgedConnection"
    assert connection.connection.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
