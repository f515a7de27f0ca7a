"""mysqlclient connections whose blocking calls run on their own worker thread.

mysqlclient (``MySQLdb``) wraps libmariadb/libmysqlclient, which only knows
blocking sockets. Inside the bridge each connection's network calls run on
its worker thread (``tandem.db.threaded``); calls that only read memory
(fetching rows already stored on the client, escaping, ``thread_id()``) stay
on the calling thread, since a thread hop costs more than the call itself.

A task cancelled while its query runs has the query killed on the server
(``KILL QUERY``, from a short second connection), so neither the server nor
the worker thread keeps working for nobody.

Before a connection goes back to the pool, the server's own word on whether
a transaction is open is read from memory (``ServerStatus``): a transaction
begun with raw SQL, which Django does not know about, must not reach the
next task.
"""

from __future__ import annotations

import ctypes
import logging
import re
from collections.abc import Callable
from typing import Any

import MySQLdb
from MySQLdb.cursors import CursorStoreResultMixIn

from tandem.bridge import in_bridge
from tandem.db.backends.mysql.kill import QueryKiller
from tandem.db.threaded import ThreadedConnection, ThreadedCursor, Worker

__all__ = [
    "LinkWatch",
    "MySQLConnection",
    "MySQLCursor",
    "ServerStatus",
    "opens_transaction",
]

logger = logging.getLogger("tandem.db.backends.mysql")

# Connection methods of mysqlclient known to read local state only: called
# directly. Every other method runs on the connection's worker thread, so
# one this list does not know (a new mysqlclient's) can never block the loop.
LOCAL_METHODS = frozenset(
    {
        "_get_native_connection",
        "affected_rows",
        "character_set_name",
        "errno",
        "error",
        "escape",
        "escape_string",
        "field_count",
        "fileno",
        "get_autocommit",
        "get_character_set_info",
        "get_host_info",
        "get_proto_info",
        "get_server_info",
        "info",
        "insert_id",
        "literal",
        "more_results",
        "sqlstate",
        "string_literal",
        "thread_id",
        "warning_count",
    }
)

# Errors after which the link to the server is gone (mysqlclient's own list):
# client-side CR_* codes (gone away, lost connection...), a packet too large,
# a connection killed (MariaDB) or timed out for inactivity (MySQL).
LINK_ERRORS = frozenset({*range(2000, 3000), 1153, 1927, 4031})

# Status flags the server sends with every OK/EOF packet (MySQL protocol).
SERVER_STATUS_IN_TRANS = 0x0001  # a transaction is open
SERVER_STATUS_AUTOCOMMIT = 0x0002
# MariaDB Connector/C: mariadb_get_info(mysql, MARIADB_CONNECTION_SERVER_STATUS,
# &unsigned) reads those flags from the MYSQL struct. Part of the library's
# ABI (libmariadb.so.3): the enum only ever grows at its end.
MARIADB_CONNECTION_SERVER_STATUS = 30
_CAPSULE_NAME = b"_mysql.connection.native_connection"

# Fallback when the flags cannot be read: statements that open a transaction
# without Django knowing (``XA BEGIN`` is MariaDB's spelling of ``XA START``).
_OPENS_TRANSACTION = re.compile(r"\s*(?:START\s+TRANSACTION|BEGIN|XA\s+(?:START|BEGIN))\b", re.IGNORECASE)


def opens_transaction(sql: Any) -> bool:
    """Whether ``sql`` starts with a statement that opens a transaction (fallback watch)."""
    if isinstance(sql, bytes):
        sql = sql.decode("utf-8", "replace")
    return isinstance(sql, str) and _OPENS_TRANSACTION.match(sql) is not None


class ServerStatus:
    """The server status flags of a connection's last reply, read from the driver's memory.

    Django only knows about the transactions it opened; a raw ``START
    TRANSACTION`` or ``BEGIN`` (or ``XA START``) through a cursor in
    autocommit mode leaves it believing the connection is idle. The server
    knows: every reply carries ``SERVER_STATUS_IN_TRANS``, and the client
    library keeps the last one in its ``MYSQL`` struct. mysqlclient only
    exposes its ``AUTOCOMMIT`` bit (``get_autocommit()``), so we ask MariaDB
    Connector/C (what mysqlclient builds against on Debian, Ubuntu, Alpine,
    Fedora...) through ``mariadb_get_info()``, on the ``MYSQL*`` mysqlclient
    hands out (``_get_native_connection()``). It is a read of memory, about
    a microsecond, no round trip: the pool may ask from plain loop callbacks.

    Built against Oracle's libmysqlclient, which has no such getter, or on
    an interpreter without ``ctypes.pythonapi``, ``for_connection`` returns
    None and the connection falls back to watching its statements.
    """

    _get_info: Any = None
    _get_pointer: Any = None
    _loaded = False

    __slots__ = ("_flags", "_mysql", "_out")

    def __init__(self, mysql: int) -> None:
        self._mysql = ctypes.c_void_p(mysql)
        self._flags = ctypes.c_uint(0)
        self._out = ctypes.byref(self._flags)

    @classmethod
    def _load(cls) -> bool:
        """Find the library's getter once per process; False if there is none."""
        if not cls._loaded:
            try:
                # dlsym on the extension's handle also searches the libraries
                # it links (or the client library compiled into it).
                library = ctypes.CDLL(MySQLdb._mysql.__file__)
                get_info = library.mariadb_get_info  # not the variadic _infov
                get_info.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
                get_info.restype = ctypes.c_ubyte  # my_bool: nonzero on failure
                get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
                get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
                get_pointer.restype = ctypes.c_void_p
                cls._get_info, cls._get_pointer = get_info, get_pointer
            except (AttributeError, OSError):
                pass
            cls._loaded = True
        return cls._get_info is not None

    @classmethod
    def for_connection(cls, raw: Any) -> ServerStatus | None:
        """A reader for ``raw``'s flags, or None if they cannot be read here.

        Call while no other thread uses ``raw``. The reader is checked
        against mysqlclient's ``get_autocommit()``, which reads the
        ``AUTOCOMMIT`` bit of the same flags: a mismatch (a library whose
        getter means something else) means None, never a wrong answer.
        """
        if not cls._load():
            return None
        try:
            mysql = cls._get_pointer(raw._get_native_connection(), _CAPSULE_NAME)
        except Exception:  # no such method, a closed connection, another capsule
            return None
        if not mysql:
            return None
        status = cls(mysql)
        try:
            autocommit = bool(raw.get_autocommit())
        except Exception:  # closed meanwhile
            return None
        flags = status.flags()
        if flags is None or bool(flags & SERVER_STATUS_AUTOCOMMIT) != autocommit:
            return None
        return status

    def flags(self) -> int | None:
        """The flags of the last reply, or None if the library refused."""
        if self._get_info(self._mysql, MARIADB_CONNECTION_SERVER_STATUS, self._out):
            return None
        return self._flags.value


class MySQLCursor(ThreadedCursor):
    """A mysqlclient cursor: statements on the worker, stored rows read in place.

    mysqlclient's default cursor stores the whole result on the client in
    ``execute()``; fetching from it is a list lookup. Unbuffered cursors
    (``SSCursor``) read rows from the network, so theirs go to the worker.
    """

    def __init__(self, raw: Any, worker: Any, conn: MySQLConnection | None = None) -> None:
        super().__init__(raw, worker)
        object.__setattr__(self, "_stored", isinstance(raw, CursorStoreResultMixIn))
        object.__setattr__(self, "_conn", conn)

    def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a statement on the worker.

        Where the server status cannot be read, a statement that opens a
        transaction marks the connection first, so it is not reused.
        """
        conn = self._conn
        if conn is not None and conn.server_status is None and opens_transaction(query):
            conn.began_transaction = True
        return super().execute(query, *args, **kwargs)

    def fetchone(self) -> Any:
        """The next row."""
        return self._raw.fetchone() if self._stored else super().fetchone()

    def fetchmany(self, size: int | None = None) -> Any:
        """Up to ``size`` rows (default: ``arraysize``)."""
        if not self._stored:
            return super().fetchmany(size)
        return self._raw.fetchmany() if size is None else self._raw.fetchmany(size)

    def fetchall(self) -> Any:
        """The remaining rows."""
        return self._raw.fetchall() if self._stored else super().fetchall()

    def close(self) -> None:
        """Close; only a cursor with results still on the wire needs the worker."""
        if self._stored and not self._worker.busy and not self._results_pending():
            self._raw.close()
        else:
            super().close()

    def nextset(self) -> Any:
        """Move to the next result set of a multi-statement query (reads the network)."""
        return self._worker.run(self._raw.nextset)

    def callproc(self, procname: str, args: Any = ()) -> Any:
        """Call a stored procedure."""
        return self._worker.run(self._raw.callproc, procname, args)

    def _results_pending(self) -> bool:
        # A multi-statement query ("SET a; SET b") leaves its later results on
        # the wire; closing the cursor reads and discards them.
        connection = self._raw.connection
        return connection is not None and bool(connection.more_results())

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_stored", "_conn"):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)


class LinkWatch:
    """A connection's worker that notes when a call fails because the link broke.

    mysqlclient's ``errno()`` is reset by the next call (closing a cursor
    is one), so the pool could not tell afterwards; we note it as it happens.
    """

    def __init__(self, worker: Worker, conn: MySQLConnection) -> None:
        self._worker = worker
        self._conn = conn

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``Worker.run``, marking the connection broken on a link error.

        A switch of autocommit the connection put off (``MySQLConnection.
        autocommit``) is made first, on the worker, in the same hop.
        """
        conn = self._conn
        if conn.pending_autocommit is not None:
            fn = conn.with_autocommit(fn)
        conn.calls += 1
        try:
            return self._worker.run(fn, *args, **kwargs)
        except MySQLdb.InterfaceError:
            self._conn.broken = True
            raise
        except MySQLdb.OperationalError as exc:
            if exc.args and exc.args[0] in LINK_ERRORS:
                self._conn.broken = True
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._worker, name)


class MySQLConnection(ThreadedConnection):
    """A mysqlclient connection whose network calls run on its worker thread.

    Also carries what tandem's pool needs to know about it: whether its last
    user gave it back clean, whether its link broke, whether a kill is still
    in flight, and whether Django has set up its session.
    """

    _own = ThreadedConnection._own | {
        "released_clean",
        "broken",
        "killer",
        "session_ready",
        "pending_autocommit",
        "calls",
        "server_status",
        "began_transaction",
    }

    # Set by the wrapper that gives the connection back to the pool: idle,
    # outside any transaction, in autocommit mode.
    released_clean = False
    # A call failed because the server or the network dropped the link.
    broken = False
    # The QueryKiller armed for this connection's worker, if any.
    killer: QueryKiller | None = None
    # True once Django's init_connection_state has set up the session.
    session_ready = False
    # An autocommit switch not sent yet: it goes with the next call to the server.
    pending_autocommit: bool | None = None
    # Calls made through the worker (in the bridge, each one a thread hop).
    calls = 0
    # Reads the server's status flags of the last reply; None if the client
    # library cannot tell (then ``began_transaction`` stands in for them).
    server_status: ServerStatus | None = None
    # Fallback only: a statement run through a cursor may have opened a transaction.
    began_transaction = False

    def __init__(self, raw: Any, worker: Worker) -> None:
        # LinkWatch stands in for the Worker it wraps (same calls, by delegation).
        super().__init__(raw, LinkWatch(worker, self))  # type: ignore[arg-type]
        self.server_status = ServerStatus.for_connection(raw)

    def cursor(self, *args: Any, **kwargs: Any) -> MySQLCursor:
        """A cursor; mysqlclient creates it without talking to the server."""
        return MySQLCursor(self._raw.cursor(*args, **kwargs), self.worker, self)

    @property
    def in_transaction(self) -> bool:
        """Whether the server may have a transaction open on this connection.

        The server's ``SERVER_STATUS_IN_TRANS`` flag as of its last reply: set
        from ``START TRANSACTION``/``BEGIN``/``XA START`` (or the first
        statement with autocommit off) until ``COMMIT``/``ROLLBACK``. An error
        reply carries no flags, so after one the flag may say "open" when the
        server already rolled back: that only costs a reconnection. Without
        the flags, any transaction-opening statement seen counts as open.
        """
        status = self.server_status
        if status is None:
            return self.began_transaction
        flags = status.flags()
        return flags is None or bool(flags & SERVER_STATUS_IN_TRANS)

    def autocommit(self, on: bool) -> None:
        """Switch autocommit; in the bridge, with the next call to the server.

        Django switches it off to open a transaction and on again after the
        commit: each switch is a round trip of its own, and in the bridge a
        thread hop too. Put off, the switch is sent just before the next
        statement (or commit, rollback, ping), on the worker, in that call's
        hop: the transaction still begins before its first statement, and a
        connection given back with autocommit on is switched back before its
        next user's first statement. Outside the bridge it is sent at once.
        """
        on = bool(on)
        if not in_bridge():
            self.pending_autocommit = None
            if bool(self._raw.get_autocommit()) != on:
                self._raw.autocommit(on)
            return
        self.pending_autocommit = None if bool(self._raw.get_autocommit()) == on else on

    def close(self) -> None:
        """Close; a switch of autocommit not sent yet no longer matters."""
        self.pending_autocommit = None
        super().close()

    def get_autocommit(self) -> bool:
        """Autocommit as Django set it (a switch not sent yet included)."""
        pending = self.pending_autocommit
        return bool(self._raw.get_autocommit()) if pending is None else pending

    def with_autocommit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, preceded by the autocommit switch still to send (on the worker)."""

        def switch_then_call(*args: Any, **kwargs: Any) -> Any:
            pending = self.pending_autocommit
            if pending is not None:
                # Cleared only once sent: a call cancelled before it ran leaves
                # the switch for the next one.
                self._raw.autocommit(pending)
                self.pending_autocommit = None
            return fn(*args, **kwargs)

        return switch_then_call

    def ping(self, *args: Any) -> Any:
        """Check the server answers (raises if not)."""
        return self.worker.run(self._raw.ping, *args)

    @property
    def is_reusable(self) -> bool:
        """Open, idle on a finished worker, given back clean, not mid-kill, no transaction open.

        ``released_clean`` is Django's view (no atomic block, autocommit on);
        ``in_transaction`` is the server's, which also knows of transactions
        opened with raw SQL.
        """
        # Checked first: mysqlclient refuses any call while its worker runs one.
        if self.worker.busy or self.broken or not self.released_clean:
            return False
        if self.killer is not None and not self.killer.settled:
            return False
        return bool(self._raw.open) and self.get_autocommit() and not self.in_transaction

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._raw, name)
        if name in LOCAL_METHODS or not callable(attr) or isinstance(attr, type):
            return attr
        return lambda *args, **kwargs: self.worker.run(attr, *args, **kwargs)
