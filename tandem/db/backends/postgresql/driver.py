"""psycopg 3's synchronous Connection, with its network waits bridged.

psycopg runs every protocol step as a generator and does all its waiting in
``Connection.wait`` (and ``waiting.wait_conn`` while connecting). Inside the
bridge we hand those generators to psycopg's own async waiters through
``await_``; outside it the stock blocking waits run, untouched.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from psycopg import errors, waiting
from psycopg.conninfo import conninfo_attempts_async, make_conninfo, timeout_from_conninfo
from psycopg.pq import TransactionStatus
from psycopg.waiting import Ready, Wait

from tandem.bridge import await_, in_bridge
from tandem.bridge.locks import BridgeLock

__all__ = ["BridgedConnection", "wait_on_loop"]

logger = logging.getLogger("tandem.db.backends.postgresql")

# How long to wait for the server to acknowledge a cancel request.
CANCEL_TIMEOUT = 5.0
# Longest sleep of psycopg's async waiter between socket events (as psycopg's
# own AsyncConnection); 0, its function default, would spin the loop.
WAIT_INTERVAL = 0.1


async def wait_on_loop(gen, fileno: int, interval: float, timeout: float | None):
    """Consume a psycopg protocol generator on the running loop.

    psycopg's ``wait_async`` also arms a timer per wait, to wake up every
    ``interval`` and notice Ctrl-C; in the bridge cancellation arrives as
    ``CancelledError`` instead, so without a ``timeout`` we skip the timer:
    one future and one reader registration per network round trip.
    """
    if timeout is not None:
        return await waiting.wait_async(gen, fileno, interval=interval, timeout=timeout)
    loop = asyncio.get_running_loop()
    try:
        wanted = next(gen)
        while True:
            wanted = gen.send(await _readiness(loop, fileno, wanted))
    except StopIteration as done:
        return done.value
    except OSError as exc:
        raise errors.OperationalError("connection socket closed") from exc


async def _readiness(loop: asyncio.AbstractEventLoop, fileno: int, wanted: Wait) -> Ready:
    ready = loop.create_future()

    def wake(state: Ready) -> None:
        if not ready.done():  # reading and writing both ready: one is enough
            ready.set_result(state)

    if wanted & Wait.R:
        loop.add_reader(fileno, wake, Ready.R)
    if wanted & Wait.W:
        loop.add_writer(fileno, wake, Ready.W)
    try:
        return await ready
    finally:
        if wanted & Wait.R:
            loop.remove_reader(fileno)
        if wanted & Wait.W:
            loop.remove_writer(fileno)


class BridgedConnection(psycopg.Connection):
    """A psycopg Connection that awaits its I/O when called inside the bridge."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # psycopg serialises users of a connection with a threading.Lock; two
        # greenlets contending for it would block the loop thread forever.
        self.lock = BridgeLock()  # type: ignore[assignment]  # threading.Lock's stand-in, same methods

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs):
        """Connect; inside the bridge without blocking the loop."""
        if not in_bridge():
            return super().connect(conninfo, **kwargs)
        return await_(cls._connect_on_loop(conninfo, **kwargs))

    @classmethod
    async def _connect_on_loop(
        cls,
        conninfo: str = "",
        *,
        autocommit: bool = False,
        prepare_threshold: int | None = 5,
        context=None,
        row_factory=None,
        cursor_factory=None,
        **kwargs,
    ):
        params = cls._get_connection_params(conninfo, **kwargs)
        timeout = timeout_from_conninfo(params)
        failures: list[BaseException] = []
        for attempt in await conninfo_attempts_async(params):
            gen = cls._connect_gen(make_conninfo("", **attempt))
            try:
                conn = await waiting.wait_conn_async(gen, interval=WAIT_INTERVAL, timeout=timeout)
            except errors._WaitTimeout:
                failures.append(errors.ConnectionTimeout("connection timeout expired"))
            except errors.Error as exc:
                failures.append(exc)
            else:
                break
        else:
            raise failures[-1].with_traceback(None)
        conn._autocommit = bool(autocommit)
        if row_factory:
            conn.row_factory = row_factory
        if cursor_factory:
            conn.cursor_factory = cursor_factory
        if context:
            conn._adapters = psycopg.adapt.AdaptersMap(context.adapters)
        conn.prepare_threshold = prepare_threshold
        return conn

    def wait(self, gen, interval: float = WAIT_INTERVAL, timeout: float | None = None):
        """Consume a protocol generator: awaited in the bridge, blocking outside."""
        if not in_bridge():
            return super().wait(gen, interval, timeout)
        try:
            return await_(wait_on_loop(gen, self.pgconn.socket, interval, timeout))
        except asyncio.CancelledError:
            self._cancel_on_loop(gen)
            raise

    def _cancel_on_loop(self, gen) -> None:
        """Our task was cancelled mid-query: stop the query on the server too.

        Without this the server keeps running it and the connection stays
        ACTIVE. We then drain the generator so the connection is usable (idle,
        or failed-in-transaction) again; if that fails we close it.
        """
        if self.pgconn.transaction_status != TransactionStatus.ACTIVE:
            return
        try:
            limits = {"interval": WAIT_INTERVAL, "timeout": CANCEL_TIMEOUT}
            await_(waiting.wait_conn_async(self._cancel_gen(), **limits))
            await_(waiting.wait_async(gen, self.pgconn.socket, **limits))
        except errors.QueryCanceled:
            pass  # what we asked for
        except BaseException as exc:
            logger.warning("query cancellation failed (%s): closing connection", exc)
            self.pgconn.finish()
