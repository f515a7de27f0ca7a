"""A tiny HTTP/1.1 GET client: one request per connection, for the upstream stub.

Each call opens a TCP connection, sends one ``GET`` with ``Connection: close``,
reads the status line, the headers and a ``Content-Length`` body, closes the
connection and returns the body's JSON. ``get_json`` is the async version
(``asyncio.open_connection``, for async views), ``get_json_sync`` the blocking
one (a plain socket, for the sync twins).

Why not httpx: with hundreds of calls in flight, httpx's CPU per call grows
(httpcore scans its whole connection pool for every request it assigns), so the
dashboard at 1000 connections measured httpx rather than the server around it.
This client keeps no pool and costs about the same per call whatever is in
flight, and every server ``bench/http.py`` compares uses it (``bench/http_apps``
loads this file by its path: standard library only, no Django).

Enough for ``example/upstream.py`` and nothing more: ``http://`` only, no
redirects, no proxies, no chunked bodies (a response without
``Content-Length`` is read to the end of the connection). Give the host as an
IP address, as the demo does: a name is resolved for every call (by the
loop's default executor in ``get_json``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
from typing import Any
from urllib.parse import urlsplit

# Seconds for the whole call (``get_json``), or for each socket operation (``get_json_sync``).
TIMEOUT = 30.0
# Longest status line + headers accepted.
MAX_HEAD = 64 * 1024


class HTTPError(Exception):
    """The answer was not a 2xx, or not HTTP/1.x that this client reads."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@functools.lru_cache(maxsize=64)
def _prepare(url: str) -> tuple[str, int, bytes]:
    """Host, port and the request's bytes for ``url``."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url!r}: only http://host[:port]/path URLs")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\n"
        "Accept: application/json\r\nConnection: close\r\n\r\n"
    )
    return parts.hostname, parts.port or 80, request.encode("ascii")


def _parse_head(head: bytes) -> tuple[int, int | None]:
    """The status and the ``Content-Length`` (None if absent) of a response's head."""
    status_line, *lines = head.rstrip(b"\r\n").split(b"\r\n")
    version, _, rest = status_line.partition(b" ")
    if not version.startswith(b"HTTP/1.") or not rest[:3].isdigit():
        raise HTTPError(f"not an HTTP/1.x response: {status_line[:80]!r}")
    length = None
    for line in lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and value.strip().lower() != b"identity":
            raise HTTPError(f"Transfer-Encoding {value.strip().decode('latin-1')} is not supported")
    return int(rest[:3]), length


def _decode(url: str, status: int, body: bytes) -> Any:
    if not 200 <= status < 300:
        raise HTTPError(f"GET {url}: HTTP {status}", status)
    return json.loads(body)


async def _get(url: str) -> Any:
    host, port, request = _prepare(url)
    reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD)
    try:
        writer.write(request)
        status, length = _parse_head(await reader.readuntil(b"\r\n\r\n"))
        body = await (reader.read() if length is None else reader.readexactly(length))
    finally:
        writer.close()
    return _decode(url, status, body)


async def get_json(url: str, timeout: float = TIMEOUT) -> Any:
    """GET ``url`` on a connection of its own; the JSON body. ``HTTPError`` unless 2xx."""
    async with asyncio.timeout(timeout):
        return await _get(url)


def get_json_sync(url: str, timeout: float = TIMEOUT) -> Any:
    """``get_json`` with a blocking socket, for sync code."""
    host, port, request = _prepare(url)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        with sock.makefile("rb") as stream:
            head = bytearray()
            while not head.endswith(b"\r\n\r\n"):
                line = stream.readline(MAX_HEAD)
                if not line or len(head) + len(line) > MAX_HEAD:
                    raise HTTPError(f"GET {url}: incomplete or oversized response head")
                head += line
            status, length = _parse_head(bytes(head))
            body = stream.read() if length is None else stream.read(length)
    if length is not None and len(body) != length:
        raise HTTPError(f"GET {url}: connection closed after {len(body)} of {length} body bytes")
    return _decode(url, status, body)
