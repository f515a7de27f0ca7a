"""Stopping a MySQL/MariaDB query whose task was cancelled: ``KILL QUERY`` from a second connection.

mysqlclient has no way to cancel a running statement on its own
connection; the server stops it when another connection sends ``KILL
QUERY <thread id>``. The worker running the statement calls a
``QueryKiller`` when the task awaiting it is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import MySQLdb

from tandem.bridge import await_, in_bridge

__all__ = ["KILL_CONNECT_TIMEOUT", "QueryKiller", "kill_params", "kill_query"]

logger = logging.getLogger("tandem.db.backends.mysql")

# Seconds the killer may take to reach the server.
KILL_CONNECT_TIMEOUT = 5


def kill_params(conn_params: dict[str, Any]) -> dict[str, Any]:
    """Connection parameters for the killer: same server and credentials, nothing else."""
    params = {key: value for key, value in conn_params.items() if key not in ("init_command", "conv")}
    params.pop("database", None)  # KILL needs none, and it may be gone
    params.pop("db", None)
    params.setdefault("connect_timeout", KILL_CONNECT_TIMEOUT)
    return params


def kill_query(params: dict[str, Any], thread_id: int) -> None:
    """On a fresh connection, stop whatever server thread ``thread_id`` runs."""
    conn = MySQLdb.connect(**params)
    try:
        conn.query(f"KILL QUERY {int(thread_id)}")
    finally:
        conn.close()


def _in_thread(fn: Callable[..., Any], *args: Any) -> Future:
    """Run ``fn`` on a short-lived thread; its outcome arrives in the Future."""
    done: Future = Future()

    def run() -> None:
        done.set_running_or_notify_cancel()
        try:
            done.set_result(fn(*args))
        except BaseException as exc:  # handed to whoever waits
            done.set_exception(exc)

    threading.Thread(target=run, name="tandem-mysql-kill", daemon=True).start()
    return done


class QueryKiller:
    """A worker's interrupt: kill the running query with ``KILL QUERY``.

    Called by the worker when the task awaiting its call is cancelled. The
    kill runs on a thread of its own (opening a connection would block the
    loop); we wait for it in the bridge, so it has landed before the
    connection is anyone's again and can never hit a later statement.
    """

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.thread_id: int | None = None
        self.pending: Future | None = None

    def arm(self, raw: Any) -> Any:
        """Note the server thread of a new connection; returns it.

        Read now: while a call runs, mysqlclient refuses every other one on
        that connection, ``thread_id()`` included.
        """
        self.thread_id = raw.thread_id()
        return raw

    @property
    def settled(self) -> bool:
        """No kill was sent, or the last one has finished."""
        return self.pending is None or self.pending.done()

    def __call__(self, raw: Any = None) -> None:
        """Kill the connection's running query; wait until the server has taken it."""
        if self.thread_id is None:
            return
        self.pending = done = _in_thread(kill_query, self.params, self.thread_id)
        try:
            if in_bridge():
                await_(asyncio.shield(asyncio.wrap_future(done)))
            else:
                done.result(KILL_CONNECT_TIMEOUT * 2)
        except asyncio.CancelledError:
            # Cancelled again while waiting: the kill still lands, and until
            # it has, the pool will not reuse the connection (``settled``).
            pass
        except Exception as exc:
            logger.warning("KILL QUERY for MySQL thread %s failed: %s", self.thread_id, exc)
