"""uvicorn's own command line, with TCP_NODELAY restored for ``--workers N``.

Usage: exactly the ``uvicorn`` command's arguments, e.g. from the repository root::

    python -m bench.http_apps.serve --app-dir . bench.http_apps.tortoise_app:app --workers 2 --port 8102

Why: with ``--workers`` > 1, uvicorn binds the listening socket itself (``Config.bind_socket``)
with ``proto`` 0; accepted connections inherit it, and asyncio only switches Nagle's algorithm off
(``TCP_NODELAY``) on sockets whose ``proto`` is ``IPPROTO_TCP``. On Linux every keep-alive request
after the first then waits ~40 ms for the client's delayed ACK, whatever the app. (uvicorn issue
#3149, open.) This wrapper gives the listening socket its real protocol number and changes
nothing else: the single-process path of uvicorn is not affected either way.
"""

from __future__ import annotations

import socket

import uvicorn.config
from uvicorn.main import main

_bind_socket = uvicorn.config.Config.bind_socket


def bind_socket(self: uvicorn.config.Config) -> socket.socket:
    """uvicorn's listening socket, marked as TCP so that asyncio sets TCP_NODELAY on accepted ones."""
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto != socket.IPPROTO_TCP:
        sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
        sock.set_inheritable(True)
    return sock


uvicorn.config.Config.bind_socket = bind_socket  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
