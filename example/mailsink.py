"""A local SMTP server that delivers nowhere: it keeps what it receives.

Stands in for the mail provider the shop sends order confirmations through.
Every message it accepts is appended to a JSON-lines file, one object per
message (``received``, ``mail_from``, ``rcpt_tos``, ``from``, ``subject``,
``date``, ``body``), which the demo's mailbox page reads.

    python mailsink.py --port 8025 --store mail.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import email
import json
from datetime import UTC, datetime
from email import policy
from pathlib import Path

from aiosmtpd.smtp import SMTP

DEFAULT_PORT = 8025


class Sink:
    """An aiosmtpd handler that appends every message to ``store``."""

    def __init__(self, store: Path) -> None:
        self.store = Path(store)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.original_content, policy=policy.default)
        body = message.get_body(preferencelist=("plain",))
        record = {
            "received": datetime.now(UTC).isoformat(timespec="seconds"),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(message["From"] or ""),
            "subject": str(message["Subject"] or ""),
            "date": str(message["Date"] or ""),
            # SMTP sends lines ending in CRLF: stored with plain newlines.
            "body": body.get_content().replace("\r\n", "\n") if body is not None else "",
        }
        # One whole line per message, written before the "250" that tells the
        # sender it was delivered: once send_mail() returns, the line is there.
        # (A blocking write on this loop is fine: the sink serves one developer.)
        with self.store.open("a", encoding="utf-8") as store:
            store.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


async def serve(store: Path, port: int) -> None:
    """Serve the sink on loopback until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Sink(store)), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--store", type=Path, default=Path("mail.jsonl"), help="JSON-lines file to append to")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.store, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
