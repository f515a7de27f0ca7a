"""Sync code in the bridge does blocking I/O by waiting on the loop: real clients, real servers.

Cooperation is shown by what the servers see, never by a clock: N sync
calls started together on the one loop thread are all in flight at the
server at once (``LoopbackServer.peak``), or a blocking wait of one lets a
task on the loop do what that wait is waiting for. Results are compared
with the same call made in a thread, as stock Django runs it.
"""

import asyncio
import os
import shutil
import socket
import time
import urllib.error
import urllib.request

import httpx
import pytest
import redis
import redis.asyncio
import requests
from django.test import override_settings

from tandem import native
from tandem.bridge import unfinished_bridges
from tests.loopback import LoopbackServer, make_certificate

CONCURRENT = 30


def _fetch(url: str, timeout: float | None = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


async def _together(fn, *args, times: int = CONCURRENT) -> list:
    return await asyncio.gather(*(native(fn)(*args) for _ in range(times)))


async def test_urllib_calls_are_all_in_flight_at_once():
    with LoopbackServer(hold=CONCURRENT) as server:
        bodies = await _together(_fetch, server.url)
        assert server.seen("peak") == CONCURRENT
    assert bodies == [b"ok"] * CONCURRENT


async def test_requests_with_keep_alive():
    def three_gets(url: str) -> list[str]:
        with requests.Session() as session:
            return [session.get(url, timeout=10).text for _ in range(3)]

    with LoopbackServer(hold=CONCURRENT) as server:
        results = await _together(three_gets, server.url)
        assert server.seen("peak") == CONCURRENT
        assert server.seen("connections") == CONCURRENT  # one kept-alive connection per session
    assert results == [["ok"] * 3] * CONCURRENT


async def test_httpx_client():
    def get(url: str) -> str:
        with httpx.Client() as client:
            return client.get(url, timeout=10).text

    with LoopbackServer(hold=CONCURRENT) as server:
        assert await _together(get, server.url) == ["ok"] * CONCURRENT
        assert server.seen("peak") == CONCURRENT


async def test_https_with_a_test_ca(tmp_path):
    if shutil.which("openssl") is None and not os.environ.get("TANDEM_REQUIRE_SERVICES"):
        pytest.skip("no openssl command to make a test certificate with")
    context, ca_file = make_certificate(tmp_path)

    def get(url: str) -> str:
        return requests.get(url, verify=str(ca_file), timeout=10).text

    with LoopbackServer(hold=10, tls=context) as server:
        assert await _together(get, server.url, times=10) == ["ok"] * 10
        assert server.seen("peak") == 10
    # The certificate is checked as ever: without the CA, the handshake fails.
    with LoopbackServer(tls=context) as server:
        with pytest.raises(requests.exceptions.SSLError):
            await native(requests.get)(server.url, timeout=10)


async def test_a_streamed_download_equals_a_threads():
    body = os.urandom(3 * 1024 * 1024)

    def download(url: str) -> bytes:
        with requests.get(url, stream=True, timeout=10) as response:
            return b"".join(response.iter_content(64 * 1024))

    with LoopbackServer(body=body) as server:
        natively, in_a_thread = (
            await native(download)(server.url),
            await asyncio.to_thread(download, server.url),
        )
    assert natively == in_a_thread == body


def _outcome(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:  # compared: type and message
        return type(exc), str(exc)


async def test_a_timeout_fires_as_it_would_in_a_thread():
    with LoopbackServer(silent=True) as server:
        natively = await native(_outcome)(_fetch, server.url, 0.3)
        in_a_thread = await asyncio.to_thread(_outcome, _fetch, server.url, 0.3)
    assert natively == in_a_thread
    assert natively[0] in (TimeoutError, urllib.error.URLError)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_cancelling_a_wait_closes_the_socket_and_leaves_nothing():
    with LoopbackServer(silent=True) as server:
        await native(_outcome)(_fetch, server.url, 0.01)  # warm: imports, the resolver
        while server.seen("disconnects") < 1:  # both ends of that connection closed
            await asyncio.sleep(0.01)
        before = _open_fds()
        task = asyncio.create_task(native(_fetch)(server.url, None))
        while not server.seen("requests") >= 2:  # the first call's, then this one's
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        while server.seen("disconnects") < 2:  # the server saw the socket close
            await asyncio.sleep(0.01)
        assert _open_fds() == before
    assert unfinished_bridges() == []
    assert asyncio.all_tasks() == {asyncio.current_task()}


@pytest.fixture
def redis_url():
    url = "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url).ping()
    except redis.ConnectionError:
        if os.environ.get("TANDEM_REQUIRE_SERVICES"):
            raise
        pytest.skip("no Redis server on 127.0.0.1:6379")
    return url


async def test_a_redis_blocking_pop_lets_the_loop_push(redis_url):
    key = f"tandem-cooperative-{os.getpid()}"
    client = redis.Redis.from_url(redis_url)
    client.delete(key)
    popping = asyncio.create_task(native(client.blpop)([key], timeout=10))
    pusher = redis.asyncio.Redis.from_url(redis_url)
    try:
        # Runs only if the loop is free while BLPOP waits for its answer.
        while (await pusher.info("clients"))["blocked_clients"] < 1:
            await asyncio.sleep(0.01)
        await pusher.rpush(key, b"item")
        assert await popping == (key.encode(), b"item")
    finally:
        await pusher.aclose()
        client.close()


async def test_names_resolve_as_in_a_thread():
    ask = (socket.getaddrinfo, "localhost", 80, 0, socket.SOCK_STREAM)
    assert await native(ask[0])(*ask[1:]) == await asyncio.to_thread(ask[0], *ask[1:])
    assert await native(socket.gethostbyname)("localhost") == socket.gethostbyname("localhost")


async def test_sleeps_overlap():
    events = []

    def nap(n: int) -> None:
        events.append(("start", n))
        time.sleep(0.05)
        events.append(("end", n))

    await asyncio.gather(*(native(nap)(n) for n in range(20)))
    first_end = next(i for i, (what, _) in enumerate(events) if what == "end")
    assert first_end == 20  # every nap had started before the first one ended


def test_outside_the_bridge_nothing_changes():
    with LoopbackServer(silent=True) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=0.2)
        with sock, pytest.raises(TimeoutError, match="timed out"):
            sock.recv(10)
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(10)


async def test_a_socket_made_non_blocking_by_its_caller_is_left_alone():
    def peek(port: int) -> str:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setblocking(False)
            try:
                sock.recv(10)
            except BlockingIOError:
                return "would block"
            return "read"

    with LoopbackServer(silent=True) as server:
        assert await native(peek)(server.port) == "would block"


@override_settings(TANDEM_COOPERATIVE_IO=False)
async def test_the_setting_turns_it_off():
    # Each call blocks the loop thread until its answer: never two in flight.
    with LoopbackServer(hold=2, patience=0.5) as server:
        assert await _together(_fetch, server.url, times=2) == [b"ok"] * 2
        assert server.seen("peak") == 1
