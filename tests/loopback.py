"""A real HTTP(S) server on loopback, in a thread of its own, that counts what it sees.

It holds the first ``hold`` requests until that many are in flight at once,
then answers them all: ``peak`` then tells whether clients really ran
concurrently (a client that blocked the loop thread would leave the others
unsent, and the server would give up waiting after ``patience`` seconds,
with a peak of 1). ``silent=True``: it reads requests and never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import threading
from pathlib import Path


class LoopbackServer:
    """``with LoopbackServer(hold=50) as server:`` then ``server.url``."""

    def __init__(
        self,
        hold: int = 0,
        silent: bool = False,
        body: bytes = b"ok",
        tls: ssl.SSLContext | None = None,
        patience: float = 20.0,
    ) -> None:
        self.hold, self.silent, self.body, self.tls, self.patience = hold, silent, body, tls, patience
        self.in_flight = self.peak = self.requests = self.connections = self.disconnects = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="loopback-server", daemon=True)
        self._all_in: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{'localhost' if self.tls else '127.0.0.1'}:{self.port}/"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def seen(self, attribute: str) -> int:
        """A counter, read on the server's thread (so it is current)."""
        return asyncio.run_coroutine_threadsafe(self._read(attribute), self._loop).result(10)

    async def _read(self, attribute: str) -> int:
        return getattr(self, attribute)

    async def _start(self) -> asyncio.Server:
        self._all_in = asyncio.Event()
        return await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)

    async def _stop(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests += 1
                if self.silent:
                    continue
                await self._maybe_hold()
                keep = b"connection: close" not in head.lower()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
                    % (len(self.body), b"" if keep else b"Connection: close\r\n")
                    + self.body
                )
                await writer.drain()
                if not keep:
                    return
        finally:
            self.disconnects += 1
            self._writers.discard(writer)
            writer.close()

    async def _maybe_hold(self) -> None:
        if self.requests > self.hold:
            return
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self.hold:
            self._all_in.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_in.wait(), self.patience)
        self.in_flight -= 1


def make_certificate(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A self-signed certificate for localhost: the server's context and the CA file to trust."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key)),
            *("-out", str(cert), "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert
