"""A stub of the "upstream service" the dashboard calls: a slow JSON API.

Stands in for the payment provider, CRM or search engine a real page waits
on. It answers ``GET /quote`` with an exchange rate after ``latency``
seconds: the ``--latency`` it was started with, or ``?latency=`` per request.

    python upstream.py --port 8001 --latency 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import json
from urllib.parse import parse_qs

DEFAULT_PORT = 8001
MAX_LATENCY = 30.0


def make_app(latency: float):
    """An ASGI app answering ``/quote`` after ``latency`` seconds (or ``?latency=``)."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] != "/quote":
            await _respond(send, 404, {"error": "not found: try /quote"})
            return
        query = parse_qs(scope["query_string"].decode())
        try:
            delay = min(max(float(query.get("latency", [latency])[0]), 0.0), MAX_LATENCY)
        except ValueError:
            await _respond(send, 400, {"error": "latency must be a number of seconds"})
            return
        await asyncio.sleep(delay)
        await _respond(send, 200, {"currency": "USD", "per_eur": 1.08, "latency": delay})

    return app


async def _respond(send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    """Serve the stub on loopback with uvicorn."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before each answer")
    args = parser.parse_args()
    # The demo's client (shop/httpget.py) sends "Connection: close": uvicorn
    # closes each connection after its one answer. For clients that keep
    # connections alive: keep-alive longer than theirs (httpx: 5 s), so that
    # a client never sends a request on a connection the stub is closing.
    config = uvicorn.Config(
        make_app(args.latency),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        backlog=4096,
        timeout_keep_alive=30,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
