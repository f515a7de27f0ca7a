"""Fixtures of the demo's tests: the upstream stub and the mail sink, served for real."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from aiosmtpd.controller import Controller
from demo import settings as demo_settings
from mailsink import Sink
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


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """MD5 for the tests' passwords: a real hasher takes 100+ ms per login by design."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def mailsink_server(tmp_path_factory) -> Controller:
    """``mailsink.py``'s handler on a free port, in aiosmtpd's own thread, for the whole session."""
    controller = Controller(Sink(tmp_path_factory.mktemp("mail") / "mail.jsonl"), "127.0.0.1", free_port())
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture
def mailsink(settings, tmp_path, mailsink_server) -> Path:
    """Email goes over SMTP to the sink, into this test's own store: its path.

    pytest-django swaps in Django's in-memory email backend for every test;
    here the demo's SMTP backend is back, pointed at the sink's port.
    """
    store = tmp_path / "mail.jsonl"
    mailsink_server.handler.store = store
    if hasattr(demo_settings, "MAILERS"):  # Django 6.1+
        options = {**demo_settings.SMTP_SINK, "port": mailsink_server.port}
        settings.MAILERS = {"default": {"BACKEND": demo_settings.MAIL_BACKEND, "OPTIONS": options}}
    else:
        settings.EMAIL_BACKEND = demo_settings.MAIL_BACKEND
        settings.EMAIL_PORT = mailsink_server.port
    settings.MAILSINK_STORE = store
    return store


def require_service(url: str, what: str) -> None:
    """Skip unless something answers at ``url`` (fail instead under TANDEM_REQUIRE_SERVICES=1)."""
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=0.5).close()
    except OSError:
        if os.environ.get("TANDEM_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{what} does not answer at {url}")
        pytest.skip(f"{what} does not answer at {url}")
