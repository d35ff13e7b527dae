"""alert: quiet hours, camera-health e-mails, SMTP retries, STARTTLS + AUTH against a real aiosmtpd server,
signed webhooks against a real HTTP server, usage counters (emulators + fake-gcs-server)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.functions.conftest import FIXTURE_START


def _msg(ev: dict) -> bytes:
    return json.dumps({"tenant_id": ev["tenant_id"], "event_id": ev["event_id"]}).encode()


def _analysed(fenv, recipients, **event_kw) -> dict:
    from vigint import analyze

    creds = fenv.provision(recipients=recipients, threshold=1)
    ev = fenv.ingested_event(creds, **event_kw)
    assert analyze.handle_ingested(data=_msg(ev)).startswith("analyzed:")
    return ev


def _doc(ev: dict) -> dict:
    from vigint import pipeline

    return pipeline.event_ref(ev["tenant_id"], ev["event_id"]).get().to_dict()


def _deliveries(ev: dict) -> dict:
    from vigint import pipeline

    return {d.id: d.to_dict() for d in
            pipeline.event_ref(ev["tenant_id"], ev["event_id"]).collection("deliveries").stream()}


def _to(smtp_sink, recipient):
    return [m for m in smtp_sink.messages() if m["To"] == recipient]


# ------------------------------------------------------------------------------------------- quiet hours
PARIS_NIGHT = {"start": "22:00", "end": "06:00", "timezone": "Europe/Paris"}


@pytest.mark.parametrize("utc, quiet", [
    ("2026-11-22T20:59:00", False),  # 21:59 in Paris (CET, UTC+1)
    ("2026-11-22T21:00:00", True),   # 22:00
    ("2026-11-23T04:59:00", True),   # 05:59
    ("2026-11-23T05:00:00", False),  # 06:00
    ("2026-07-01T20:30:00", True),   # 22:30 in Paris in summer (CEST, UTC+2)
])
def test_quiet_hours_window(utc, quiet):
    from vigint import alert

    now = dt.datetime.fromisoformat(utc).replace(tzinfo=dt.timezone.utc)
    assert alert.in_quiet_hours(PARIS_NIGHT, now) is quiet
    assert alert.in_quiet_hours({"start": "09:00", "end": "17:00", "timezone": "UTC"}, now) is (9 <= now.hour < 17)
    assert alert.in_quiet_hours({"start": "10:00", "end": "10:00", "timezone": "UTC"}, now) is False


def test_quiet_hours_hold_emails_below_level_3(fenv, smtp_sink):
    from vigint import alert, pipeline

    night = FIXTURE_START.replace(hour=22, minute=30)  # 23:30 in Paris (00:30 in summer)
    recipient = f"night-{uuid.uuid4().hex[:8]}@example.com"
    person = _analysed(fenv, [recipient])
    pipeline.tenant_ref(person["tenant_id"]).update({"quiet_hours": PARIS_NIGHT})
    assert alert.handle_analyzed(data=_msg(person), now=night) == "not_alerted"
    decision = _doc(person)["alert"]
    assert decision["alerted"] is False and "quiet hours" in decision["reason"]
    assert _to(smtp_sink, recipient) == []

    # Threat level 3 (a camera tampered with) goes out even at night, with the health template.
    from vigint import analyze, provisioning

    creds = provisioning.credentials(person["tenant_id"], "nuc-1", 1)
    tampered = fenv.ingested_event(creds, labels=("camera_tampered",), kind="camera_health", clip=None, snapshot=None,
                                   detections=[], max_count={})
    analyze.handle_ingested(data=_msg(tampered))
    assert alert.handle_analyzed(data=_msg(tampered), now=night) == "sent:1"
    (mail,) = _to(smtp_sink, recipient)
    assert mail["Subject"] == "[Vigint] Camera health: Camera tampered with: lobby"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    assert "Condition: camera_tampered" in text and "/v/" in text

    # The next morning a person event is e-mailed again.
    morning = night.replace(hour=9, minute=0) + dt.timedelta(days=1)  # 10:00 in Paris (11:00 in summer)
    later = fenv.ingested_event(creds)
    analyze.handle_ingested(data=_msg(later))
    assert alert.handle_analyzed(data=_msg(later), now=morning) == "sent:1"
    assert len(_to(smtp_sink, recipient)) == 2


# --------------------------------------------------------------------------------------------- SMTP
def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (also its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vigint-test-smtp")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "smtp-cert.pem", tmp / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class _Recorder:
    """aiosmtpd handler: refuses the first ``refuse`` RCPTs with 451, then stores every message."""

    def __init__(self, refuse: int = 0):
        self.refuse, self.messages, self.rcpt_calls, self.sessions = refuse, [], 0, []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        self.rcpt_calls += 1
        if self.rcpt_calls <= self.refuse:
            return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        import email
        import email.policy

        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        self.sessions.append({"tls": session.ssl is not None, "login": getattr(session, "auth_login", None),
                              "authenticated": session.authenticated,
                              "mechanism": getattr(session, "auth_mechanism", None)})
        return "250 Message accepted"


@pytest.fixture
def smtp_server(tmp_path):
    """Starts aiosmtpd servers on free ports; yields a factory ``(handler, tls=False, mechanisms=None)``."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from infra.local.stack import free_port as _free

    controllers = []
    cert, key = _self_signed(tmp_path)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"alerts" and auth_data.password == b"s3cret-pass"
        session.auth_mechanism = mechanism
        session.auth_login = auth_data.login if ok else None
        return AuthResult(success=ok, handled=False)

    def start(handler, tls: bool = False, exclude: list[str] | None = None) -> dict:
        port = _free()
        kw = {}
        if tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            kw = {"tls_context": ctx, "require_starttls": True, "authenticator": authenticator,
                  "auth_required": True, "auth_exclude_mechanism": exclude or []}
        c = Controller(handler, hostname="127.0.0.1", port=port, **kw)
        c.start()
        controllers.append(c)
        return {"port": port, "ca_file": str(cert)}

    yield start
    for c in controllers:
        c.stop()


def _point_smtp_at(monkeypatch, port: int, **extra: str) -> None:
    from vigint import clients

    monkeypatch.setenv("VIGINT_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("VIGINT_SMTP_PORT", str(port))
    monkeypatch.setenv("VIGINT_SMTP_RETRY_INITIAL_S", "0.05")
    for k, v in extra.items():
        monkeypatch.setenv(k, v)
    clients.reset()


def test_smtp_refusing_then_accepting_sends_once(fenv, smtp_server, monkeypatch):
    from vigint import alert, usage

    handler = _Recorder(refuse=1)
    srv = smtp_server(handler)
    _point_smtp_at(monkeypatch, srv["port"])
    recipient = f"retry-{uuid.uuid4().hex[:8]}@example.com"
    ev = _analysed(fenv, [recipient])
    assert alert.handle_analyzed(data=_msg(ev)) == "sent:1"
    assert alert.handle_analyzed(data=_msg(ev)) == "sent:0"  # Pub/Sub redelivery
    assert [m["To"] for m in handler.messages] == [recipient]
    assert handler.rcpt_calls == 2
    (d,) = _deliveries(ev).values()
    assert (d["status"], d["attempts"], d["smtp_attempts"]) == ("sent", 1, 2)
    assert usage.get(ev["tenant_id"])["emails_sent"] == 1


def test_smtp_refusing_longer_than_the_retries_raises_then_redelivery_sends_once(fenv, smtp_server, monkeypatch):
    from vigint import alert

    handler = _Recorder(refuse=2)
    srv = smtp_server(handler)
    _point_smtp_at(monkeypatch, srv["port"], VIGINT_SMTP_RETRY_ATTEMPTS="2")
    recipient = f"retry2-{uuid.uuid4().hex[:8]}@example.com"
    ev = _analysed(fenv, [recipient])
    with pytest.raises(alert.DeliveryError):
        alert.handle_analyzed(data=_msg(ev))
    assert handler.messages == []
    assert alert.handle_analyzed(data=_msg(ev)) == "sent:1"
    assert alert.handle_analyzed(data=_msg(ev)) == "sent:0"
    assert len(handler.messages) == 1
    (d,) = _deliveries(ev).values()
    assert (d["status"], d["attempts"]) == ("sent", 2)


def test_permanent_refusal_is_recorded_and_not_retried(fenv, smtp_server, monkeypatch):
    from vigint import alert

    class Refuser(_Recorder):
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
            self.rcpt_calls += 1
            return "550 5.1.1 No such user"

    handler = Refuser()
    srv = smtp_server(handler)
    _point_smtp_at(monkeypatch, srv["port"])
    ev = _analysed(fenv, [f"nobody-{uuid.uuid4().hex[:8]}@example.com"])
    assert alert.handle_analyzed(data=_msg(ev)) == "sent:0"  # no exception: retrying cannot help
    assert alert.handle_analyzed(data=_msg(ev)) == "sent:0"
    (d,) = _deliveries(ev).values()
    assert d["status"] == "failed" and d["permanent"] is True and "550" in d["last_error"]
    assert handler.rcpt_calls == 1


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_starttls_and_auth(fenv, smtp_server, monkeypatch, mechanism):
    from vigint import alert

    handler = _Recorder()
    other = "PLAIN" if mechanism == "LOGIN" else "LOGIN"
    srv = smtp_server(handler, tls=True, exclude=[other])
    _point_smtp_at(monkeypatch, srv["port"], VIGINT_SMTP_STARTTLS="true", VIGINT_SMTP_USER="alerts",
                   VIGINT_SMTP_PASSWORD="s3cret-pass", VIGINT_SMTP_CA_FILE=srv["ca_file"])
    recipient = f"tls-{uuid.uuid4().hex[:8]}@example.com"
    ev = _analysed(fenv, [recipient])
    assert alert.handle_analyzed(data=_msg(ev)) == "sent:1"
    assert [m["To"] for m in handler.messages] == [recipient]
    assert handler.sessions == [{"tls": True, "login": b"alerts", "authenticated": True,
                                 "mechanism": mechanism}]


def test_starttls_without_the_ca_fails_and_bad_password_is_refused(fenv, smtp_server, monkeypatch):
    import ssl
    import smtplib

    from vigint.mailer import Mailer, PermanentSmtpError
    from email.message import EmailMessage

    handler = _Recorder()
    srv = smtp_server(handler, tls=True)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@example.com", "b@example.com", "x"
    msg.set_content("x")
    untrusted = Mailer("127.0.0.1", srv["port"], "alerts", "s3cret-pass", starttls=True, timeout_s=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        untrusted.send(msg)
    wrong = Mailer("127.0.0.1", srv["port"], "alerts", "wrong", starttls=True, ca_file=srv["ca_file"], timeout_s=5,
                   retry_attempts=3, retry_initial_s=0.01)
    with pytest.raises(PermanentSmtpError) as err:
        wrong.send(msg)
    assert isinstance(err.value.__cause__, smtplib.SMTPAuthenticationError)
    assert wrong.last_attempts == 1  # not retried
    assert handler.messages == []


# ------------------------------------------------------------------------------------------- webhook
class _Hook:
    """A real HTTP endpoint that answers ``fail_first`` POSTs with 503, then 200, recording each request."""

    def __init__(self, fail_first: int = 0):
        self.fail_first, self.requests = fail_first, []
        hook = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.requests.append({"headers": dict(self.headers), "body": body})
                status = 503 if len(hook.requests) <= hook.fail_first else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/vigint"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_webhook_is_signed_retried_and_recorded_once(fenv, smtp_sink, monkeypatch):
    from vigint import alert, clients, pipeline, webhook

    monkeypatch.setenv("VIGINT_WEBHOOK_RETRY_INITIAL_S", "0.05")
    clients.reset()
    hook = _Hook(fail_first=1)
    secret = "whsec-" + uuid.uuid4().hex
    try:
        recipient = f"hook-{uuid.uuid4().hex[:8]}@example.com"
        ev = _analysed(fenv, [recipient])
        pipeline.tenant_ref(ev["tenant_id"]).update({"alert.webhook": {"url": hook.url, "secret": secret}})
        assert alert.handle_analyzed(data=_msg(ev)) == "sent:1"
        assert alert.handle_analyzed(data=_msg(ev)) == "sent:0"
    finally:
        hook.close()
    assert len(hook.requests) == 2  # 503, then 200; the redelivery did not POST again
    last = hook.requests[-1]
    ts, sig = last["headers"][webhook.TIMESTAMP_HEADER], last["headers"][webhook.SIGNATURE_HEADER]
    assert webhook.verify(secret, last["body"], ts, sig)
    assert not webhook.verify("other-secret", last["body"], ts, sig)
    assert not webhook.verify(secret, last["body"].replace(b"lobby", b"lobbz"), ts, sig)
    assert not webhook.verify(secret, last["body"], ts, sig, now=int(ts) + 301)  # too old: a replay
    body = json.loads(last["body"])
    assert (body["event_id"], body["camera_id"], body["analysis"]["threat_level"]) == (ev["event_id"], "lobby", 2)
    assert secret not in last["body"].decode()
    hooks = [d for d in _deliveries(ev).values() if d["kind"] == "webhook"]
    assert len(hooks) == 1 and hooks[0]["status"] == "sent" and hooks[0]["http_attempts"] == 2
    assert hooks[0]["http_status"] == 200
    assert _doc(ev)["alert"]["channels"] == ["email", "webhook"]
    assert len(_to(smtp_sink, recipient)) == 1
