"""Name resolution and sleeps of sync code in the bridge, without blocking the loop.

``getaddrinfo`` and ``gethostbyname`` ask the system resolver, which may
wait seconds for a DNS server: in the bridge they run in the loop's
executor (``loop.getaddrinfo``) while the loop goes on. An address that is
already numeric needs no resolver and is answered at once. ``time.sleep``
in the bridge is ``asyncio.sleep``. Everywhere else, the originals.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Callable
from typing import Any

from tandem import conf
from tandem.bridge.greenlets import await_, in_bridge

__all__ = ["getaddrinfo", "gethostbyname", "resolved", "sleep"]


def _here() -> bool:
    return in_bridge() and conf.cooperative_io()


def _numeric(host: Any) -> bool:
    """True for an IP address literal (or no host at all): nothing to ask a resolver."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("idna")
    if not isinstance(host, str):
        return False
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host.partition("%")[0])
            return True
        except (OSError, ValueError):
            continue
    return False


def getaddrinfo(original: Callable[..., Any]) -> Callable[..., Any]:
    """``socket.getaddrinfo``: in the bridge, resolved in the loop's executor."""

    @functools.wraps(original)
    def cooperative_getaddrinfo(
        host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> Any:
        if not _here() or _numeric(host):
            return original(host, port, family, type, proto, flags)
        loop = asyncio.get_running_loop()
        resolving = loop.run_in_executor(None, original, host, port, family, type, proto, flags)
        return await_(resolving)

    return cooperative_getaddrinfo


def gethostbyname(original: Callable[..., Any]) -> Callable[..., Any]:
    """``socket.gethostbyname`` (and ``_ex``): in the bridge, in the loop's executor."""

    @functools.wraps(original)
    def cooperative_gethostbyname(host: str) -> Any:
        if not _here() or _numeric(host):
            return original(host)
        return await_(asyncio.get_running_loop().run_in_executor(None, original, host))

    return cooperative_gethostbyname


def resolved(sock: socket.socket, address: Any) -> Any:
    """``address`` for ``sock.connect()``, its host name already resolved (without blocking)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return address
    host, port = address[0], address[1]
    if _numeric(host):
        return address
    infos = socket.getaddrinfo(host, port, sock.family, sock.type, sock.proto)
    return infos[0][4]


def sleep(original: Callable[[float], None]) -> Callable[[float], None]:
    """``time.sleep``: in the bridge, ``asyncio.sleep``: the loop runs meanwhile."""

    @functools.wraps(original)
    def cooperative_sleep(seconds: float) -> None:
        if not _here():
            return original(seconds)
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        await_(asyncio.sleep(seconds))
        return None

    return cooperative_sleep
