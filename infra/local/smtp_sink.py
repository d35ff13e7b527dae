"""The local SMTP server: aiosmtpd accepting every message into a Maildir.

Each stored message gets an ``X-Vigint-Received-At`` header (UTC epoch seconds, float) so the demo can
measure event-to-inbox latency. Run as ``python -m infra.local.smtp_sink --port P --maildir DIR``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import mailbox
import signal
import threading
import time
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller


class MaildirHandler:
    """aiosmtpd handler that delivers each DATA into a Maildir, one file per recipient envelope."""

    def __init__(self, maildir: Path):
        for sub in ("tmp", "new", "cur"):
            (Path(maildir) / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(str(maildir), create=True)
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        msg["X-Vigint-Received-At"] = f"{time.time():.6f}"
        msg["X-Vigint-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        with self._lock:
            self.maildir.add(msg.as_bytes(policy=email.policy.SMTP))
        return "250 Message accepted for delivery"


def read_messages(maildir: Path) -> list[EmailMessage]:
    """All messages in ``maildir``, oldest first (by their receive stamp)."""
    if not (Path(maildir) / "cur").exists():
        return []
    box = mailbox.Maildir(str(maildir), create=False)
    msgs = [email.message_from_bytes(box.get_bytes(k), policy=email.policy.default) for k in box.keys()]
    return sorted(msgs, key=lambda m: float(m.get("X-Vigint-Received-At", 0)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args()
    controller = Controller(MaildirHandler(args.maildir), hostname=args.host, port=args.port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
