#!/usr/bin/env python
"""Sending email from async code: tandem's asend_mail against Django's SMTP backend in threads.

Run from the repository root (an SMTP sink is started on loopback in a
process of its own, aiosmtpd's ``Sink`` handler)::

    python bench/mail.py              # 5 rounds, ~30 s
    python bench/mail.py --rounds 9 --messages 200

Three ways to send ``--messages`` messages (``send_mail``: one SMTP
connection each) concurrently from one event loop, all through smtplib:

* ``tandem``: ``await tandem.mail.asend_mail(...)`` with tandem's SMTP
  backend: the SMTP dialogue awaited on the loop, no thread;
* ``django-threads``: ``await sync_to_async(send_mail, thread_sensitive=False)(...)``
  with Django's backend: one executor thread per send in flight;
* ``django-default``: ``await sync_to_async(send_mail)(...)``, asgiref's
  default (thread_sensitive=True): every send queued behind the others on
  one thread, which is what an async view gets unless its author knows.

The table shows the median time per batch and per message over the rounds
(the order of the modes rotating) and the ratios to tandem; JSON goes to
bench/results/mail-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

# bench/http.py would shadow the standard library's http package that Django imports.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import django
from django.conf import settings

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("tandem", "django-threads", "django-default")
BACKENDS = {
    "tandem": "tandem.mail.backends.smtp.EmailBackend",
    "django": "django.core.mail.backends.smtp.EmailBackend",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink(port: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "aiosmtpd",
        "-n",
        "-c",
        "aiosmtpd.handlers.Sink",
        "-l",
        f"127.0.0.1:{port}",
    ]
    sink = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return sink
        except OSError:
            time.sleep(0.05)
    sink.kill()
    raise SystemExit(f"the SMTP sink did not start on port {port}")


def configure(port: int) -> None:
    options = {"host": "127.0.0.1", "port": port, "timeout": 10}
    if django.VERSION >= (6, 1):  # MAILERS replaces the EMAIL_* settings
        mail = {"MAILERS": {name: {"BACKEND": path, "OPTIONS": options} for name, path in BACKENDS.items()}}
    else:
        mail = {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": port, "EMAIL_TIMEOUT": 10}
    settings.configure(INSTALLED_APPS=["tandem"], DATABASES={}, **mail)
    django.setup()


def via(backend: str) -> dict:
    """send_mail()'s keyword that picks ``backend``: a MAILERS alias or a connection."""
    if django.VERSION >= (6, 1):
        return {"using": backend}
    from django.core.mail import get_connection

    return {"connection": get_connection(BACKENDS[backend])}


def senders() -> dict:
    from asgiref.sync import sync_to_async
    from django.core.mail import send_mail

    from tandem.mail import asend_mail

    message = ("Your onsale order", "Thank you for your order!\n" * 20, "tickets@onsale.example")

    def tandem():
        return asend_mail(*message, ["fan@example.com"], **via("tandem"))

    def threads():
        return sync_to_async(send_mail, thread_sensitive=False)(
            *message, ["fan@example.com"], **via("django")
        )

    def default():
        return sync_to_async(send_mail)(*message, ["fan@example.com"], **via("django"))

    return {"tandem": tandem, "django-threads": threads, "django-default": default}


async def batch(send, messages: int) -> float:
    start = time.perf_counter()
    sent = await asyncio.gather(*(send() for _ in range(messages)))
    assert sum(sent) == messages, sent
    return (time.perf_counter() - start) * 1e3


async def run(rounds: int, messages: int) -> dict:
    send = senders()
    samples = {mode: [] for mode in MODES}
    for mode in MODES:  # warm up: imports, threads, the host name lookup
        await batch(send[mode], 10)
    for r in range(rounds):
        for mode in MODES[r % 3 :] + MODES[: r % 3]:
            samples[mode].append(await batch(send[mode], messages))
    return {mode: statistics.median(values) for mode, values in samples.items()}


def report(medians: dict, rounds: int, messages: int) -> None:
    print(f"\n{messages} messages sent concurrently, median of {rounds} rounds\n")
    print(f"{'mode':<16}{'ms/batch':>10}{'ms/message':>12}{'vs tandem':>11}")
    for mode, ms in medians.items():
        print(f"{mode:<16}{ms:>10.1f}{ms / messages:>12.2f}{ms / medians['tandem']:>10.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args(argv)
    port = free_port()
    sink = start_sink(port)
    try:
        configure(port)
        medians = asyncio.run(run(args.rounds, args.messages))
    finally:
        sink.terminate()
        sink.wait(10)
    report(medians, args.rounds, args.messages)
    document = {
        "python": sys.version.split()[0],
        "django": django.get_version(),
        "rounds": args.rounds,
        "messages": args.messages,
        "median_ms": medians,
        "vs_tandem": {mode: ms / medians["tandem"] for mode, ms in medians.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mail-latest.json").write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
