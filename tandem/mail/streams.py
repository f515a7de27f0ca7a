"""The part of a socket smtplib uses, over an asyncio stream, awaited in the bridge.

smtplib talks to its server through four calls on a socket: ``sendall(data)``,
``makefile("rb").readline(limit)``, ``close()`` and, for STARTTLS,
``context.wrap_socket(sock, server_hostname=...)``. ``StreamSocket`` offers the
same calls over an ``asyncio`` stream. Each one awaits on the loop with
``await_()``: the greenlet running smtplib is suspended and the loop runs other
tasks meanwhile, so a sync ``send_mail()`` in the bridge never blocks it.

It fails the way a socket with a timeout fails, so smtplib and Django's backend
raise exactly what they raise with a real socket:

* a connect, read, write or TLS handshake that takes longer than ``timeout``
  raises ``TimeoutError("timed out")`` (``socket.timeout``, same message);
* a connection that cannot be made raises the ``OSError`` subclass and message
  ``socket.create_connection()`` raises (``ConnectionRefusedError(111,
  "Connection refused")``, ``socket.gaierror``, ...), for the last address tried;
* a connection lost midway raises ``ConnectionResetError`` and friends, and
  TLS failures ``ssl.SSLError`` and its subclasses, as sockets do.

Only code running in the bridge may use a ``StreamSocket``: elsewhere its calls
raise ``OutsideBridgeError`` (``close()`` excepted, which works from anywhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Awaitable
from typing import TypeVar

from tandem.bridge import OutsideBridgeError, await_, in_bridge

__all__ = ["StreamSocket"]

T = TypeVar("T")

# socket.timeout's own message; smtplib quotes it in SMTPServerDisconnected.
TIMED_OUT = "timed out"


async def _within(timeout: float | None, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``; after ``timeout`` seconds give up as a socket does."""
    if timeout is None:
        return await awaitable
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            return await awaitable
    except TimeoutError:
        if deadline.expired():
            raise TimeoutError(TIMED_OUT) from None
        raise  # an OS-level timeout (ETIMEDOUT): keep its errno


def _as_socket_error(exc: OSError) -> OSError:
    # asyncio words a failed connect "Connect call failed ('127.0.0.1', 25)";
    # a socket says "[Errno 111] Connection refused". Same class either way
    # (OSError(errno, ...) picks the subclass), so only the words change.
    if exc.errno and not isinstance(exc, socket.gaierror):
        return OSError(exc.errno, os.strerror(exc.errno))
    return exc


async def _connect(
    address: tuple[str, int],
    timeout: float | None,
    source_address: tuple[str, int] | None,
    tls: ssl.SSLContext | None,
    server_hostname: str | None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``socket.create_connection()``'s walk over the host's addresses, awaited."""
    loop = asyncio.get_running_loop()
    host, port = address
    try:
        # An IP address needs no lookup: resolve it here rather than pay
        # for a trip through the executor (loop.getaddrinfo() always takes one).
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError("getaddrinfo returns an empty list")
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            if source_address:
                sock.bind(source_address)
            await _within(timeout, loop.sock_connect(sock, sockaddr))
        except OSError as exc:
            sock.close()
            error = _as_socket_error(exc)  # as create_connection: the last one is raised
            continue
        except BaseException:
            sock.close()
            raise
        break
    else:
        assert error is not None
        raise error
    try:
        # With ``tls`` (SMTP_SSL), the handshake happens here, under the same timeout.
        return await _within(
            timeout,
            asyncio.open_connection(sock=sock, ssl=tls, server_hostname=server_hostname if tls else None),
        )
    except BaseException:
        sock.close()
        raise


class StreamSocket:
    """A socket for smtplib, backed by an asyncio stream; each of its waits is an await in the bridge.

    Build it with ``StreamSocket.connect()`` from code running under
    ``native()``. ``timeout`` (seconds, ``None`` for none) bounds each call, as
    a socket's timeout does.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float | None
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self.timeout = timeout

    @classmethod
    def connect(
        cls,
        address: tuple[str, int],
        timeout: float | None,
        source_address: tuple[str, int] | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> StreamSocket:
        """Connect like ``socket.create_connection()``; with ``tls``, also do the TLS handshake."""
        reader, writer = await_(_connect(address, timeout, source_address, tls, server_hostname))
        return cls(reader, writer, timeout)

    # -- what smtplib calls ----------------------------------------------------

    def sendall(self, data: bytes) -> None:
        """Send all of ``data``, waiting while the server is slow to take it."""
        if not in_bridge():  # before the write, which would not check
            raise OutsideBridgeError("a StreamSocket is used by code running under tandem.native() only")
        writer = self._writer
        writer.write(data)
        transport = writer.transport
        # Mostly the kernel took it all at once: nothing to wait for, and no
        # reason to leave the greenlet. drain() waits for a buffer to empty,
        # and raises the error of a connection that is gone.
        if transport.get_write_buffer_size() or transport.is_closing():
            await_(_within(self.timeout, writer.drain()))

    def makefile(self, mode: str = "rb") -> _LineReader:
        """A binary reader of the stream, the only kind smtplib asks for."""
        if mode != "rb":
            raise ValueError(f"StreamSocket.makefile() supports mode 'rb' only, not {mode!r}")
        return _LineReader(self)

    def readline(self, limit: int = -1) -> bytes:
        """One line, ending in ``b"\\n"``, or what is left before the end of the stream."""
        return await_(_within(self.timeout, self._readline(limit)))

    async def _readline(self, limit: int) -> bytes:
        try:
            # A line longer than ``limit`` comes back whole, where a socket
            # file would cut it at ``limit``: smtplib's limit only serves to
            # reject such a line ("Line too long"), which it still does.
            return await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:  # the end of the stream
            return exc.partial
        except asyncio.LimitOverrunError as exc:  # no newline in the reader's whole buffer
            return await self._reader.read(limit if limit > 0 else exc.consumed)

    def start_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        """Upgrade the connection to TLS in place (STARTTLS)."""
        await_(_within(self.timeout, self._start_tls(context, server_hostname)))

    async def _start_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        await self._writer.start_tls(context, server_hostname=server_hostname)

    def close(self) -> None:
        """Close the connection; no wait (a TLS close notification is sent in the background)."""
        if in_bridge():
            self._writer.close()
            return
        # Closed from elsewhere (a thread cleaning up): a transport belongs to
        # its loop's thread. A loop that is gone has closed it already.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._writer.close)


class _LineReader:
    """What ``StreamSocket.makefile("rb")`` returns: smtplib reads replies with ``readline()``."""

    def __init__(self, sock: StreamSocket) -> None:
        self._sock = sock

    def readline(self, limit: int = -1) -> bytes:
        """One line of the stream (see ``StreamSocket.readline``)."""
        return self._sock.readline(limit)

    def close(self) -> None:
        """Nothing to release: the stream belongs to the socket."""
