"""What every server in bench/http_apps shares: its settings and its upstream call.

Settings come from the environment, read once at import (so once per worker process):

- ``TANDEM_BENCH_DSN``: PostgreSQL URL (default ``postgresql://postgres@127.0.0.1:5432/tandem_bench``).
- ``TANDEM_BENCH_POOL``: database connections per worker process (default 10).
- ``TANDEM_BENCH_UPSTREAM``: URL of the slow upstream service the dashboard calls.
- ``TANDEM_BENCH_UPSTREAM_CLIENT``: ``httpget`` (default, the contract: the tandem demo's own
  ``example/shop/httpget.py``, one request per connection, the client every server in
  ``bench/http.py`` uses), ``httpx`` (one shared ``httpx.AsyncClient``) or ``aiohttp`` (one shared
  ``aiohttp.ClientSession``; needs aiohttp installed). The last two are not the contract: ways to
  see how much of the dashboard's cost is the client's.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

DSN = os.environ.get("TANDEM_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/tandem_bench")
POOL_SIZE = int(os.environ.get("TANDEM_BENCH_POOL", "10"))
UPSTREAM_URL = os.environ.get("TANDEM_BENCH_UPSTREAM", "http://127.0.0.1:8090/quote?latency=0.05")

# Seconds a request may wait for a free pooled connection before it fails.
POOL_TIMEOUT = 30.0
# Seconds for the whole upstream call.
UPSTREAM_TIMEOUT = 30.0
# The HTTP client for the upstream: ``httpget`` (the contract) or, for comparison, ``httpx`` (its
# connection pool costs CPU in proportion to its size, ~20 ms a request at 100 requests in flight)
# or ``aiohttp``.
UPSTREAM_CLIENT = os.environ.get("TANDEM_BENCH_UPSTREAM_CLIENT", "httpget")
if UPSTREAM_CLIENT not in ("httpget", "httpx", "aiohttp"):
    raise ValueError("TANDEM_BENCH_UPSTREAM_CLIENT must be httpget, httpx or aiohttp.")


def _load_httpget() -> Any:
    """The demo's ``example/shop/httpget.py``, by its path: no Django, no ``example/`` on sys.path."""
    path = Path(__file__).resolve().parents[2] / "example" / "shop" / "httpget.py"
    spec = importlib.util.spec_from_file_location("tandem_demo_httpget", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


httpget = _load_httpget()


@dataclass(frozen=True)
class Database:
    """The parts of ``DSN``, for libraries that want them one by one."""

    host: str
    port: int
    user: str
    password: str
    name: str


def database(dsn: str = DSN) -> Database:
    """Split a ``postgresql://user:password@host:port/name`` URL."""
    parts = urlsplit(dsn)
    return Database(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        name=unquote(parts.path.lstrip("/")) or "tandem_bench",
    )


def dsn_with_driver(driver: str, dsn: str = DSN) -> str:
    """``dsn`` with its scheme replaced by ``postgresql+<driver>`` (SQLAlchemy's form)."""
    return f"postgresql+{driver}://{dsn.split('://', 1)[1]}"


class Upstream:
    """The upstream service: ``httpget``, a new connection per call, the same client as the demo's.

    The comparison clients (``httpx``, ``aiohttp``) are pooled, one per worker process, made on
    first use inside the running event loop, so the same object serves apps with a lifespan (which
    close it) and Django's ASGI handler (which has none).
    """

    def __init__(self) -> None:
        self._client: Any = None

    async def fetch(self) -> Any:
        """GET the upstream and return its JSON; an error status is an error here too."""
        if UPSTREAM_CLIENT == "httpget":
            return await httpget.get_json(UPSTREAM_URL, UPSTREAM_TIMEOUT)
        if UPSTREAM_CLIENT == "aiohttp":
            return await self._fetch_aiohttp()
        if self._client is None:
            import httpx

            # No cap on connections to the upstream, and enough kept alive for 1000 concurrent requests.
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=1000)
            self._client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, limits=limits)
        response = await self._client.get(UPSTREAM_URL)
        response.raise_for_status()
        return response.json()

    async def _fetch_aiohttp(self) -> Any:
        import aiohttp

        if self._client is None:
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT)
            )
        async with self._client.get(UPSTREAM_URL) as response:
            response.raise_for_status()
            return await response.json()

    async def aclose(self) -> None:
        if self._client is not None:
            await (self._client.close() if UPSTREAM_CLIENT == "aiohttp" else self._client.aclose())
            self._client = None
