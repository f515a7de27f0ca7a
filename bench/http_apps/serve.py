"""uvicorn's own command line, with TCP_NODELAY restored for ``--workers N``.

Usage: exactly the ``uvicorn`` command's arguments, e.g. from the repository root::

    python -m bench.http_apps.serve --app-dir . bench.http_apps.tortoise_app:app --workers 2 --port 8102

Why: with ``--workers`` > 1, uvicorn binds the listening socket itself (``Config.bind_socket``)
with ``proto`` 0; accepted connections inherit it, and asyncio only switches Nagle's algorithm off
(``TCP_NODELAY``) on sockets whose ``proto`` is ``IPPROTO_TCP``. On Linux every keep-alive request
after the first then waits ~40 ms for the client's delayed ACK, whatever the app. (uvicorn issue
#3149, open.) This wrapper gives the listening socket its real protocol number and changes
nothing else: the single-process path of uvicorn is not affected either way.

And with ``--workers`` > 1, one listening socket per worker (``SO_REUSEPORT``), so that the
kernel spreads connections over the workers. With uvicorn's one shared socket, whichever worker
wakes first accepts most of wrk's connections: at 50 connections one worker often got all of them
and the other idled (seen with ``top``: one worker at 94 % CPU, the other at 0 %), which halved
the throughput of one run and not the next. ``TANDEM_BENCH_REUSEPORT=0`` turns this off.
"""

from __future__ import annotations

import os
import socket

import uvicorn.config
import uvicorn.server
from uvicorn.main import main

REUSEPORT = os.environ.get("TANDEM_BENCH_REUSEPORT", "1") == "1" and hasattr(socket, "SO_REUSEPORT")

_bind_socket = uvicorn.config.Config.bind_socket


def bind_socket(self: uvicorn.config.Config) -> socket.socket:
    """uvicorn's listening socket, marked as TCP so that asyncio sets TCP_NODELAY on accepted ones."""
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto != socket.IPPROTO_TCP:
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        sock.set_inheritable(True)
    return sock


def _own_socket(shared: socket.socket) -> socket.socket:
    """A listening socket of this worker's own, on the shared socket's address."""
    own = socket.socket(shared.family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    own.bind(shared.getsockname())
    shared.close()
    return own


def bind_socket_reuseport(self: uvicorn.config.Config) -> socket.socket:
    """The parent's socket, bound with SO_REUSEPORT so that each worker can bind its own."""
    if self.uds or self.fd is not None:
        return bind_socket(self)
    family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((self.host, self.port))
    sock.set_inheritable(True)
    return sock


_serve = uvicorn.server.Server.serve


async def serve(self: uvicorn.server.Server, sockets: list[socket.socket] | None = None) -> None:
    """uvicorn's ``Server.serve``; a worker listens on a socket of its own."""
    if sockets and REUSEPORT and all(s.family in (socket.AF_INET, socket.AF_INET6) for s in sockets):
        sockets = [_own_socket(s) for s in sockets]
    await _serve(self, sockets)


uvicorn.config.Config.bind_socket = bind_socket_reuseport if REUSEPORT else bind_socket  # type: ignore[method-assign]
uvicorn.server.Server.serve = serve  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
