"""What every server in bench/http_apps shares: its settings and its upstream call.

Settings come from the environment, read once at import (so once per worker process):

- ``TANDEM_BENCH_DSN``: PostgreSQL URL (default ``postgresql://postgres@127.0.0.1:5432/tandem_bench``).
- ``TANDEM_BENCH_POOL``: database connections per worker process (default 10).
- ``TANDEM_BENCH_UPSTREAM``: URL of the slow upstream service the dashboard calls.
- ``TANDEM_BENCH_UPSTREAM_CLIENT``: ``httpx`` (default, the contract: one shared ``httpx.AsyncClient``)
  or ``aiohttp`` (one shared ``aiohttp.ClientSession``; needs aiohttp installed). Not part of the
  contract: a way to see how much of the dashboard's cost is httpx's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

DSN = os.environ.get("TANDEM_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/tandem_bench")
POOL_SIZE = int(os.environ.get("TANDEM_BENCH_POOL", "10"))
UPSTREAM_URL = os.environ.get("TANDEM_BENCH_UPSTREAM", "http://127.0.0.1:8090/quote?latency=0.05")

# Seconds a request may wait for a free pooled connection before it fails.
POOL_TIMEOUT = 30.0
# Seconds for the whole upstream call.
UPSTREAM_TIMEOUT = 30.0
# No cap on connections to the upstream, and enough kept alive for 1000 concurrent requests.
UPSTREAM_LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=1000)
# The HTTP client for the upstream: ``httpx`` (the contract) or ``aiohttp`` (for comparison: httpcore's
# connection pool costs CPU in proportion to its size, ~20 ms a request at 100 requests in flight).
UPSTREAM_CLIENT = os.environ.get("TANDEM_BENCH_UPSTREAM_CLIENT", "httpx")
if UPSTREAM_CLIENT not in ("httpx", "aiohttp"):
    raise ValueError("TANDEM_BENCH_UPSTREAM_CLIENT must be httpx or aiohttp.")


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
    """The upstream service, through one pooled HTTP client per worker process.

    The client is made on first use, inside the running event loop, so the same object serves apps
    with a lifespan (which close it) and Django's ASGI handler (which has none).
    """

    def __init__(self) -> None:
        self._client: Any = None

    async def fetch(self) -> Any:
        """GET the upstream and return its JSON; an error status is an error here too."""
        if UPSTREAM_CLIENT == "aiohttp":
            return await self._fetch_aiohttp()
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, limits=UPSTREAM_LIMITS)
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
