"""SMTP delivery (smtplib): STARTTLS and AUTH when configured, transient failures retried (tenacity).

Retried: connection failures, a dropped connection and 4xx replies (RFC 5321 4yz: "transient negative
completion") before the message was accepted. Not retried: 5xx replies (permanent) and anything after the
server accepted the message, so a retry never sends a second copy of an accepted message.

One attempt (connect, EHLO, STARTTLS, AUTH, the whole message and its reply) is bounded by
``SMTP_TIMEOUT_S`` in total, not only per socket operation: a watchdog shuts the connection at the deadline.
That bound is what the alert's delivery claim leases (``vigint.alert.SENDING_LEASE_S``): a claim renewed before
every attempt and before every back-off wait (``send(..., before_attempt=)``) outlives the attempt it covers.

SMTP has no idempotency key. A reply lost after the server accepted the DATA (the connection drops, the
process dies) looks like a failure, so that e-mail may go out twice; the stable ``Message-ID`` the caller
sets (``vigint.alert.message_id``) lets mail clients and servers fold the copies.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from email.message import EmailMessage

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

log = logging.getLogger(__name__)

SMTP_TIMEOUT_S = 15.0
"""Longest one SMTP attempt may take, seconds (the whole conversation; also each socket operation's timeout).

Far below RFC 5321 section 4.5.3.2's relay-to-relay timeouts (minutes, up to 10 min for the answer to DATA),
on purpose: we submit to one relay (SendGrid, SES, Workspace's relay), which answers in well under a second,
and the delivery claim's lease (``vigint.alert.SENDING_LEASE_S``) follows this bound, so a process killed
mid-send is retried within seconds. A relay slower than this gets the message again with the same
``Message-ID`` (at-least-once; docs/contracts.md "Delivery guarantees")."""
RETRY_MAX_WAIT_S = 10.0
"""Longest back-off wait between two attempts, seconds."""


class PermanentSmtpError(RuntimeError):
    """The server refused the message for good (5xx): retrying cannot help."""


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: network errors, a dropped connection, 4xx replies."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(400 <= int(code) < 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPResponseException):
        return 400 <= int(exc.smtp_code) < 500
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return False
    return isinstance(exc, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError))


class Mailer:
    """Sends one message per call over a fresh SMTP connection.

    Args:
        host: SMTP server host.
        port: SMTP server port.
        user: AUTH user (None: no AUTH).
        password: AUTH password.
        starttls: upgrade with STARTTLS before AUTH (server certificate verified).
        timeout_s: longest time one attempt may take, seconds (default ``SMTP_TIMEOUT_S``).
        ssl_context: TLS context for STARTTLS (default: system CAs, plus ``ca_file`` if given).
        ca_file: a PEM file of extra trusted CA certificates (``VIGINT_SMTP_CA_FILE``; e.g. a private CA).
        retry_attempts: connections per ``send`` at most (>= 1).
        retry_initial_s: back-off multiplier in seconds (random waits up to initial * 2^n, at most
            ``RETRY_MAX_WAIT_S``).
    """

    def __init__(self, host: str, port: int, user: str | None = None, password: str | None = None,
                 starttls: bool = False, timeout_s: float = SMTP_TIMEOUT_S, ssl_context: ssl.SSLContext | None = None,
                 ca_file: str | None = None, retry_attempts: int = 1, retry_initial_s: float = 1.0):
        self.host, self.port, self.user, self._password = host, port, user, password
        self.starttls, self.timeout_s = starttls, timeout_s
        self._ssl_context = ssl_context
        self.ca_file = ca_file
        self.retry_attempts, self.retry_initial_s = max(1, int(retry_attempts)), retry_initial_s
        self.last_attempts = 0

    @classmethod
    def from_settings(cls, s) -> "Mailer":
        """A mailer for ``vigint.config.Settings`` (``VIGINT_SMTP_*``)."""
        return cls(s.smtp_host, s.smtp_port, s.smtp_user,
                   s.smtp_password.get_secret_value() if s.smtp_password else None, s.smtp_starttls,
                   ca_file=s.smtp_ca_file, retry_attempts=s.smtp_retry_attempts,
                   retry_initial_s=s.smtp_retry_initial_s)

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
            if self.ca_file:
                self._ssl_context.load_verify_locations(cafile=self.ca_file)
        return self._ssl_context

    def send(self, message: EmailMessage, before_attempt: Callable[[], None] | None = None) -> int:
        """Sends ``message`` to its ``To`` addresses, retrying transient failures.

        Args:
            message: the e-mail.
            before_attempt: called before every attempt and before every back-off wait (e.g. to renew a
                delivery claim); whatever it raises stops the send at once (nothing more is sent).

        Returns:
            The number of attempts it took (also in ``last_attempts``).

        Raises:
            PermanentSmtpError: the server refused for good (5xx); do not retry.
            smtplib.SMTPException, OSError: still failing after the retries (retry later).
        """
        self.last_attempts = 0
        renew = before_attempt or (lambda: None)
        try:
            for attempt in Retrying(stop=stop_after_attempt(self.retry_attempts),
                                    wait=wait_random_exponential(multiplier=self.retry_initial_s,
                                                                 max=RETRY_MAX_WAIT_S),
                                    retry=retry_if_exception(is_transient), reraise=True,
                                    before_sleep=lambda _state: renew()):
                with attempt:
                    renew()
                    self.last_attempts += 1
                    self._send_once(message)
        except (smtplib.SMTPException, OSError) as exc:
            if not is_transient(exc):
                raise PermanentSmtpError(f"{type(exc).__name__}: {str(exc)[:300]}") from exc
            raise
        log.info("mailer: message %s accepted by %s:%d (attempt %d)", message.get("Message-ID", "?"), self.host,
                 self.port, self.last_attempts)
        return self.last_attempts

    def _send_once(self, message: EmailMessage) -> None:
        with smtplib.SMTP(timeout=self.timeout_s) as smtp:  # not connected yet: the watchdog covers that too
            # The socket timeout bounds each operation; the watchdog bounds the whole attempt (a server that
            # answers every command just within the timeout would otherwise hold one attempt for minutes).
            expired = threading.Event()

            def shut() -> None:
                expired.set()
                _shut(smtp)

            watchdog = threading.Timer(self.timeout_s, shut)
            watchdog.daemon = True
            watchdog.start()
            try:
                smtp._host = self.host  # what SMTP(host) sets and starttls() checks the certificate against
                smtp.connect(self.host, self.port)
                if expired.is_set():  # the deadline passed while connecting, before there was a socket to shut
                    raise smtplib.SMTPServerDisconnected(f"no answer within {self.timeout_s:.0f} s")
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                if self.user:
                    smtp.login(self.user, self._password or "")
                refused = smtp.send_message(message)
            finally:
                watchdog.cancel()
        if refused:  # some recipients refused, others accepted: the message went out; report, never resend
            log.warning("mailer: %d recipient(s) refused by %s:%d", len(refused), self.host, self.port)


def _shut(smtp: smtplib.SMTP) -> None:
    """Ends an attempt that ran past its deadline: the blocked read or write fails at once (OSError)."""
    sock = getattr(smtp, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
