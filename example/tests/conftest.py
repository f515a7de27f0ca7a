"""Fixtures of the demo's tests: the upstream stub, served for real."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn
from upstream import make_app


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def upstream_url() -> str:
    """``upstream.py`` on a free port, in a thread, for the whole session."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(0.0), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the upstream stub did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/quote"
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def upstream(settings, upstream_url):
    """Point the demo at the stub."""
    settings.UPSTREAM_URL = upstream_url
    return upstream_url
