"""A TCP proxy on loopback that the outage scenario can cut, freeze and restore.

It runs on an event loop of its own, in a thread, so that the scenario's
loop (the code under test) never carries it. Three states:

* ``up``: bytes flow both ways between each client and the server;
* ``down`` (``cut()``): every connection is closed and new ones are refused,
  which is what a client sees when the server is stopped;
* ``frozen`` (``freeze()``): existing connections are closed, new ones are
  accepted but nothing is ever answered, which is what a client sees when
  the server (or the network on the way) hangs;

``restore()`` brings it back up, on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from concurrent.futures import Future


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Proxy:
    """``127.0.0.1:port`` forwarding to ``target_host:target_port``."""

    def __init__(self, port: int, target_host: str, target_port: int) -> None:
        self.port = port
        self.target = (target_host, target_port)
        self.state = "down"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxy", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- the scenario's side (any thread) ---------------------------------------
    def start(self) -> None:
        """Start the thread and listen."""
        self._thread.start()
        self._call(self._listen)

    def cut(self) -> None:
        """Close every connection and refuse new ones: the server is down."""
        self._call(self._cut)

    def freeze(self) -> None:
        """Close every connection; accept new ones and never answer: the server hangs."""
        self._call(self._freeze)

    def restore(self) -> None:
        """Forward again."""
        self._call(self._restore)

    def stop(self) -> None:
        """Close everything and end the thread."""
        if self._thread.is_alive():
            self._call(self._shutdown)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    async def acut(self) -> None:
        """``cut()`` without blocking the calling loop."""
        await asyncio.to_thread(self.cut)

    async def afreeze(self) -> None:
        """``freeze()`` without blocking the calling loop."""
        await asyncio.to_thread(self.freeze)

    async def arestore(self) -> None:
        """``restore()`` without blocking the calling loop."""
        await asyncio.to_thread(self.restore)

    def _call(self, coro_function) -> None:
        future: Future = asyncio.run_coroutine_threadsafe(coro_function(), self._loop)
        future.result(10)

    # -- the proxy's own loop -----------------------------------------------------
    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.state = "up"

    async def _cut(self) -> None:
        self.state = "down"
        server, self._server = self._server, None
        if server is not None:
            server.close()
        # Since Python 3.12.1 ``wait_closed()`` also waits for the server's
        # connections to end: drop them first, or it waits forever.
        self._drop_all()
        if server is not None:
            await server.wait_closed()

    async def _shutdown(self) -> None:
        await self._cut()
        # Every connection is aborted, so each ``_serve`` ends on its own;
        # cancelling them instead makes asyncio's stream callback log errors.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=2)

    async def _freeze(self) -> None:
        await self._listen()
        self.state = "frozen"
        self._drop_all()

    async def _restore(self) -> None:
        if self.state == "frozen":
            self._drop_all()  # connections accepted while frozen never got a greeting
        await self._listen()

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.state == "frozen":
            return  # hold the connection open, answer nothing, until restored or dropped
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(server_writer)
        pump = asyncio.gather(self._pipe(reader, server_writer), self._pipe(server_reader, writer))
        with contextlib.suppress(Exception):
            await pump
        for end in (writer, server_writer):
            self._writers.discard(end)
            end.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.transport.abort()
