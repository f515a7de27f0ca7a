"""Socket and TLS calls of sync code in the bridge, waiting on the loop instead of blocking it.

Each replacement wraps the standard library's method (the patch registry
applies them to ``socket.socket`` and ``ssl.SSLSocket``). Outside a bridge
greenlet, on any other thread, and for a socket its caller made
non-blocking, it calls the original at once: Python's own behaviour. In
the bridge it makes the socket non-blocking for the call, tries the
operation, and when it would block waits for the socket on the loop
(``waiting.wait``), within the socket's own timeout: a call that would
have raised ``TimeoutError("timed out")`` after ``settimeout(t)`` seconds
raises it after as long here.

``makefile()``, ``socket.create_connection()``, ``SSLSocket.recv``/
``send``/``sendall`` and the clients built on them (``http.client``,
``urllib``, ``requests``, redis-py, ``smtplib``) go through these methods.
"""

from __future__ import annotations

import _socket
import errno
import functools
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any

from tandem.bridge.cooperative.names import resolved
from tandem.bridge.cooperative.waiting import cooperates, nonblocking, wait

__all__ = [
    "accept",
    "connect",
    "connect_ex",
    "reading",
    "sendall",
    "tls_handshake",
    "writing",
]

_WOULD_BLOCK = (BlockingIOError, InterruptedError)


def _retried(original: Callable[..., Any], writes: bool) -> Callable[..., Any]:
    """``original(sock, ...)``, retried in the bridge each time the socket is ready."""

    @functools.wraps(original)
    def cooperative(sock: Any, *args: Any, **kwargs: Any) -> Any:
        if not cooperates(sock):
            return original(sock, *args, **kwargs)
        with nonblocking(sock) as deadline:
            while True:
                try:
                    return original(sock, *args, **kwargs)
                except _WOULD_BLOCK:
                    wait(sock, writes, deadline)
                except ssl.SSLWantReadError:
                    wait(sock, False, deadline)
                except ssl.SSLWantWriteError:
                    wait(sock, True, deadline)

    return cooperative


def reading(original: Callable[..., Any]) -> Callable[..., Any]:
    """A receiving method (``recv``, ``recv_into``, ``recvfrom``, ``SSLSocket.read``...)."""
    return _retried(original, writes=False)


def writing(original: Callable[..., Any]) -> Callable[..., Any]:
    """A sending method (``send``, ``sendto``, ``SSLSocket.write``)."""
    return _retried(original, writes=True)


def accept(original: Callable[..., Any]) -> Callable[..., Any]:
    """``socket._accept``: waits for a connection to accept."""
    return _retried(original, writes=False)


def tls_handshake(original: Callable[..., Any]) -> Callable[..., Any]:
    """``SSLSocket.do_handshake`` and ``unwrap``: TLS asks to read or to write in turn."""
    return _retried(original, writes=True)


def sendall(original: Callable[..., Any]) -> Callable[..., Any]:
    """``socket.sendall``: every byte sent, waiting whenever the send buffer is full."""

    @functools.wraps(original)
    def cooperative_sendall(sock: socket.socket, data: Any, flags: int = 0) -> None:
        if not cooperates(sock):
            return original(sock, data, flags)
        view = memoryview(data).cast("B")
        with nonblocking(sock) as deadline:
            while view:
                try:
                    view = view[sock.send(view, flags) :]
                except _WOULD_BLOCK:
                    wait(sock, True, deadline)
        return None

    return cooperative_sendall


def connect(original: Callable[..., Any]) -> Callable[..., Any]:
    """``socket.connect``: the name resolved and the connection made while the loop runs."""
    return _connecting(original, raises=True)


def connect_ex(original: Callable[..., Any]) -> Callable[..., Any]:
    """``socket.connect_ex``: as ``connect``, the error as a number (0: connected)."""
    return _connecting(original, raises=False)


def _connecting(original: Callable[..., Any], raises: bool) -> Callable[..., Any]:
    @functools.wraps(original)
    def cooperative_connect(sock: socket.socket, address: Any) -> Any:
        if not cooperates(sock):
            return original(sock, address)
        code = _connect(sock, resolved(sock, address), _socket.socket.connect)
        if code and raises:
            raise OSError(code, os.strerror(code))
        return None if raises else code

    return cooperative_connect


def _connect(sock: socket.socket, address: Any, start: Callable[..., Any]) -> int:
    """Connect ``sock`` without blocking; the connection's error number (0: connected)."""
    with nonblocking(sock) as deadline:
        try:
            start(sock, address)
            return 0
        except _WOULD_BLOCK:
            pass
        except OSError as exc:
            if exc.errno != errno.EINPROGRESS:
                raise
        wait(sock, True, deadline)
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
