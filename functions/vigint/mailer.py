"""SMTP delivery (smtplib): STARTTLS and AUTH when configured."""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage

log = logging.getLogger(__name__)


class Mailer:
    """Sends one message per call over a fresh SMTP connection.

    Args:
        host: SMTP server host.
        port: SMTP server port.
        user: AUTH user (None: no AUTH).
        password: AUTH password.
        starttls: upgrade with STARTTLS before AUTH (server certificate verified with the system CAs).
        timeout_s: socket timeout in seconds.
    """

    def __init__(self, host: str, port: int, user: str | None = None, password: str | None = None,
                 starttls: bool = False, timeout_s: float = 30.0, ssl_context: ssl.SSLContext | None = None):
        self.host, self.port, self.user, self._password = host, port, user, password
        self.starttls, self.timeout_s = starttls, timeout_s
        self._ssl_context = ssl_context

    @classmethod
    def from_settings(cls, s) -> "Mailer":
        """A mailer for ``vigint.config.Settings`` (``VIGINT_SMTP_*``)."""
        return cls(s.smtp_host, s.smtp_port, s.smtp_user,
                   s.smtp_password.get_secret_value() if s.smtp_password else None, s.smtp_starttls)

    def send(self, message: EmailMessage) -> None:
        """Sends ``message`` to its ``To`` addresses.

        Raises:
            smtplib.SMTPException, OSError: the server refused or could not be reached (retry later).
        """
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=self._ssl_context or ssl.create_default_context())
                smtp.ehlo()
            if self.user:
                smtp.login(self.user, self._password or "")
            refused = smtp.send_message(message)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)
        log.info("mailer: message %s accepted by %s:%d", message.get("Message-ID", "?"), self.host, self.port)
