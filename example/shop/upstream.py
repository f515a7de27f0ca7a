"""Calls to the upstream service (``example/upstream.py``), with httpx.

One ``httpx.AsyncClient`` per event loop keeps connections to the service
alive between requests, as a real site would for its payment provider.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx
from django.conf import settings

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)
_sync_client: httpx.Client | None = None
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=1000)


def client() -> httpx.AsyncClient:
    """The running loop's client."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None:
        found = _clients[loop] = httpx.AsyncClient(timeout=30, limits=LIMITS)
    return found


async def close_client() -> None:
    """Close the running loop's client (tests; servers just exit)."""
    found = _clients.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.aclose()


def quote_url(latency: float | None = None) -> str:
    """The upstream URL, asking for ``latency`` seconds if given."""
    url = settings.UPSTREAM_URL
    if latency is not None:
        url += ("&" if "?" in url else "?") + f"latency={latency}"
    return url


async def fetch_quote(latency: float | None = None) -> dict:
    """The upstream's answer: an exchange rate, after its latency."""
    response = await client().get(quote_url(latency))
    response.raise_for_status()
    return response.json()


def fetch_quote_sync(latency: float | None = None) -> dict:
    """The same for sync views: one thread-safe client per process."""
    global _sync_client
    if _sync_client is None:
        _sync_client = httpx.Client(timeout=30, limits=LIMITS)
    response = _sync_client.get(quote_url(latency))
    response.raise_for_status()
    return response.json()
