#!/usr/bin/env python
"""What cooperative I/O adds to a socket call outside the bridge.

tandem replaces ``socket.socket``'s sending and receiving methods (see
docs/concepts/sync-code-on-the-loop.md). Outside a bridge greenlet the
replacement only asks ``in_bridge()`` and calls the original: this prints
that cost, as the median of several rounds of ``send`` + ``recv`` of one
byte on a socket pair, stock methods against tandem's, side by side.

    python bench/cooperative.py [--rounds 7] [--iterations 200000]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from pathlib import Path

# The repository, not bench/ (whose http.py would shadow the standard library's).
sys.path[0] = str(Path(__file__).resolve().parent.parent)


def per_call(send, recv, pair, iterations: int) -> float:
    """µs per socket call: ``send`` then ``recv`` of one byte, ``iterations`` times."""
    a, b = pair
    started = time.perf_counter()
    for _ in range(iterations):
        send(a, b"x")
        recv(b, 1)
    return (time.perf_counter() - started) / iterations / 2 * 1e6


def main() -> None:
    """Configure Django with tandem, then time stock and tandem's methods in alternation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=200_000)
    args = parser.parse_args()
    import django
    from django.conf import settings

    settings.configure(INSTALLED_APPS=["tandem"], DATABASES={})
    django.setup()  # activates tandem: socket.socket's methods are tandem's now
    stock = (socket.socket.send.__wrapped__, socket.socket.recv.__wrapped__)
    tandem = (socket.socket.send, socket.socket.recv)
    pair = socket.socketpair()
    times: dict[str, list[float]] = {"stock": [], "tandem": []}
    for _ in range(args.rounds):
        times["stock"].append(per_call(*stock, pair, args.iterations))
        times["tandem"].append(per_call(*tandem, pair, args.iterations))
    s, t = statistics.median(times["stock"]), statistics.median(times["tandem"])
    print(f"{'socket call outside the bridge':<34}{'µs/call':>10}   (median of {args.rounds})")
    print(f"{'stock Python':<34}{s:>10.3f}")
    print(f"{'with tandem activated':<34}{t:>10.3f}   +{t - s:.3f} µs, {t / s:.2f}x")


if __name__ == "__main__":
    main()
