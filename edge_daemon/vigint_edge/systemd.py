"""systemd service notifications (``sd_notify``): READY=1, STATUS=..., WATCHDOG=1, STOPPING=1.

The protocol is one datagram of newline-separated ``KEY=VALUE`` lines sent to the unix socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract socket when it starts with ``@``); see ``sd_notify(3)``. The
watchdog interval comes from ``$WATCHDOG_USEC`` (microseconds), valid only for the process named by
``$WATCHDOG_PID`` when that is set (``sd_watchdog_enabled(3)``). Without ``$NOTIFY_SOCKET`` (not started by
systemd, or ``Type=simple``) every call is a no-op, so the daemon runs the same from a shell.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends service state to systemd.

    Args:
        socket_path: ``$NOTIFY_SOCKET``'s value; None or empty disables every notification.
        watchdog_usec: ``$WATCHDOG_USEC``'s value in microseconds; None or 0 means no watchdog.
    """

    def __init__(self, socket_path: str | None = None, watchdog_usec: int | None = None) -> None:
        self.socket_path = socket_path or None
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Notifier":
        """A notifier configured from ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``.

        A malformed ``$WATCHDOG_USEC`` or a ``$WATCHDOG_PID`` naming another process disables the watchdog
        (as ``sd_watchdog_enabled`` does) instead of raising.
        """
        environ = os.environ if environ is None else environ
        usec: int | None = None
        try:
            usec = int(environ.get("WATCHDOG_USEC", "0")) or None
            pid = environ.get("WATCHDOG_PID")
            if pid and int(pid) != os.getpid():
                usec = None
        except ValueError:
            log.warning("ignoring malformed WATCHDOG_USEC/WATCHDOG_PID")
            usec = None
        return cls(environ.get("NOTIFY_SOCKET"), usec)

    @property
    def enabled(self) -> bool:
        """True when notifications go somewhere (``$NOTIFY_SOCKET`` was set)."""
        return self.socket_path is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1, in seconds: half of ``$WATCHDOG_USEC`` (the margin ``sd_notify(3)``
        recommends); None when no watchdog is configured or notifications are disabled."""
        if not self.enabled or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def notify(self, **fields: object) -> bool:
        """Sends one datagram ``KEY=VALUE\\n...`` (keys upper-cased).

        Returns:
            True if sent; False when disabled or the socket is unreachable (logged, never raised: a lost
            notification must not stop the daemon).
        """
        if not self.enabled or not fields:
            return False
        payload = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        address = self.socket_path
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                # Never wait: a listener that stops reading (its queue holds 10 datagrams,
                # net.unix.max_dgram_qlen) would otherwise block the thread sending the watchdog forever.
                sock.setblocking(False)
                sock.sendall(payload)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.socket_path, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1 (``Type=notify`` start-up is complete), with an optional STATUS line."""
        return self.notify(ready=1, status=status) if status else self.notify(ready=1)

    def status(self, text: str) -> bool:
        """STATUS=text, shown by ``systemctl status``."""
        return self.notify(status=text)

    def watchdog(self) -> bool:
        """WATCHDOG=1: the service is alive (must come at least every ``$WATCHDOG_USEC``)."""
        return self.notify(watchdog=1)

    def stopping(self) -> bool:
        """STOPPING=1: the service is shutting down."""
        return self.notify(stopping=1)
