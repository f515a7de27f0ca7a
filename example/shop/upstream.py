"""Calls to the upstream service (``example/upstream.py``).

Through ``shop.httpget``: each call opens a connection of its own, sends one
``GET`` with ``Connection: close`` and reads the JSON answer. No pool to share
between event loops or threads, and a cost per call that does not grow with
the calls in flight (see that module for why not httpx).
"""

from __future__ import annotations

from django.conf import settings

from shop.httpget import get_json, get_json_sync


def quote_url(latency: float | None = None) -> str:
    """The upstream URL, asking for ``latency`` seconds if given."""
    url = settings.UPSTREAM_URL
    if latency is not None:
        url += ("&" if "?" in url else "?") + f"latency={latency}"
    return url


async def fetch_quote(latency: float | None = None) -> dict:
    """The upstream's answer: an exchange rate, after its latency."""
    return await get_json(quote_url(latency))


def fetch_quote_sync(latency: float | None = None) -> dict:
    """The same for sync views, with a blocking socket."""
    return get_json_sync(quote_url(latency))
