"""A real HTTP(S) server on loopback, in threads of its own, that counts what it sees.

It holds the first ``hold`` requests until that many are in flight at once,
then answers them all: ``peak`` then tells whether clients really ran
concurrently (a client that blocked the loop thread would leave the others
unsent, and the server would give up waiting after ``patience`` seconds,
with a peak of 1). ``silent=True``: it reads requests and never answers.
Plain blocking sockets, a thread per connection: nothing here shares the
event loop, or the bridge, with the clients under test.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
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
        self._all_in = False
        self._counts = threading.Condition()
        self._open: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{'localhost' if self.tls else '127.0.0.1'}:{self.port}/"

    def __enter__(self) -> LoopbackServer:
        serve = self._serve

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                serve(self.request)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        with self._counts:
            self._all_in = True  # release anything still held
            self._counts.notify_all()
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(10)

    def seen(self, attribute: str) -> int:
        """A counter, as the server's threads have left it."""
        with self._counts:
            return getattr(self, attribute)

    def _serve(self, sock: socket.socket) -> None:
        with self._counts:
            self.connections += 1
            self._open.add(sock)
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            with sock.makefile("rb") as reader:
                while self._answer(sock, reader):
                    pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            sock.close()
            with self._counts:
                self._open.discard(sock)
                self.disconnects += 1

    def _answer(self, sock: socket.socket, reader) -> bool:
        """Read one request and answer it; False when the connection is over."""
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = reader.readline()
            if not line:
                return False
            head += line
        with self._counts:
            self.requests += 1
            number = self.requests
        if self.silent:
            return True
        if number <= self.hold:
            self._wait_for_the_others()
        keep = b"connection: close" not in head.lower()
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
            % (len(self.body), b"" if keep else b"Connection: close\r\n")
            + self.body
        )
        return keep

    def _wait_for_the_others(self) -> None:
        with self._counts:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if self.in_flight >= self.hold:
                self._all_in = True
                self._counts.notify_all()
            self._counts.wait_for(lambda: self._all_in, self.patience)
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
