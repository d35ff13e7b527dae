"""alert under faults: a sender that dies mid-send, duplicate deliveries in parallel, the cooldown document
(emulators, fake-gcs-server, the real SMTP sink; a process death is a ``BaseException`` raised inside the real
mailer, which no handler catches, so the delivery is left exactly as a ``kill -9`` leaves it)."""

from __future__ import annotations

import datetime as dt
import json
import socket
import threading
import time
import uuid

import pytest

from tests.functions.conftest import FIXTURE_START, start_and_join
from tests.functions.mailbox import by_recipient as _mail, recipients as _recipients
from tests.functions.v2 import Lifecycle, signed


class Killed(BaseException):
    """The process died here (nothing after this point ran)."""


def _msg(ev: dict) -> bytes:
    return json.dumps({"tenant_id": ev["tenant_id"], "event_id": ev["event_id"]}).encode()


def _doc(tenant_id: str, event_id: str) -> dict:
    from vigint import pipeline

    return pipeline.event_ref(tenant_id, event_id).get().to_dict()


def _deliveries(tenant_id: str, event_id: str) -> dict:
    from vigint import pipeline

    return {d.id: d.to_dict() for d in pipeline.event_ref(tenant_id, event_id).collection("deliveries").stream()}


def _mailer(die_before: set[str] = frozenset(), die_after: set[str] = frozenset()):
    """The real mailer (``VIGINT_SMTP_*``: the stack's SMTP sink) whose process dies before sending to the
    recipients ``die_before``, or after the server accepted the message for ``die_after``."""
    from vigint import config
    from vigint.mailer import Mailer

    class Dying(Mailer):
        def send(self, message, before_attempt=None):
            if message["To"] in die_before:
                raise Killed
            attempts = super().send(message, before_attempt=before_attempt)
            if message["To"] in die_after:
                raise Killed
            return attempts

    return Dying.from_settings(config.settings())


def _analysed_event(fenv, recipients, **tenant_kw) -> dict:
    from vigint import analyze

    creds = fenv.provision(recipients=recipients, **tenant_kw)
    ev = fenv.ingested_event(creds)
    assert analyze.handle_ingested(data=_msg(ev)) == "analyzed:detections_only"
    return ev


def test_sender_killed_mid_send_is_redelivered_not_acked_then_sent_once_after_the_lease(fenv, smtp_sink):
    from vigint import alert, pipeline

    recipients = _recipients(2)
    ev = _analysed_event(fenv, recipients)
    t, e = ev["tenant_id"], ev["event_id"]
    now = FIXTURE_START + dt.timedelta(seconds=10)
    with pytest.raises(Killed):  # dies while sending to the first recipient
        alert.handle_analyzed(data=_msg(ev), mailer=_mailer(die_before={recipients[0]}), now=now)
    assert _deliveries(t, e)[alert.delivery_id(recipients[0])]["status"] == "sending"

    # The redelivery seconds later: the claim still holds, so the message must come back (not be acked);
    # the other recipient is sent meanwhile, and the event is not "alerted" while an e-mail is missing.
    with pytest.raises(pipeline.InProgress):
        alert.handle_analyzed(data=_msg(ev), now=now + dt.timedelta(seconds=2))
    mail = _mail(smtp_sink, recipients)
    assert [len(mail[r]) for r in recipients] == [0, 1]
    assert _doc(t, e).get("status") != "alerted"

    # Still inside the lease: still in progress. Past it: taken over and sent, exactly once per recipient.
    with pytest.raises(pipeline.InProgress):
        alert.handle_analyzed(data=_msg(ev), now=now + dt.timedelta(seconds=alert.SENDING_LEASE_S - 1))
    assert alert.handle_analyzed(data=_msg(ev), now=now + dt.timedelta(seconds=alert.SENDING_LEASE_S + 1)) == "sent:1"
    assert alert.handle_analyzed(data=_msg(ev), now=now + dt.timedelta(seconds=alert.SENDING_LEASE_S + 2)) == "sent:0"
    mail = _mail(smtp_sink, recipients)
    assert [len(mail[r]) for r in recipients] == [1, 1]
    assert _doc(t, e)["status"] == "alerted"
    d = _deliveries(t, e)[alert.delivery_id(recipients[0])]
    assert (d["status"], d["attempts"]) == ("sent", 2)


def test_lease_is_one_smtp_attempt_plus_a_margin_not_minutes():
    from vigint import alert, mailer

    assert alert.SENDING_LEASE_S == max(mailer.SMTP_TIMEOUT_S, mailer.RETRY_MAX_WAIT_S) + alert.SENDING_MARGIN_S
    assert 10 <= alert.SENDING_LEASE_S <= 30  # retried within seconds, yet one SMTP attempt fits
    assert alert.webhook_lease_s(10.0) <= 60


def test_sender_killed_after_the_server_accepted_sends_a_second_copy_with_the_same_message_id(fenv, smtp_sink):
    """The at-least-once window (docs/contracts.md, "Delivery guarantees"): nothing recorded ``sent``, so the
    retry sends again; both copies carry the same Message-ID and the first copy's link keeps working."""
    from vigint import alert, clients

    recipients = _recipients(1)
    ev = _analysed_event(fenv, recipients)
    now = FIXTURE_START + dt.timedelta(seconds=10)
    with pytest.raises(Killed):
        alert.handle_analyzed(data=_msg(ev), mailer=_mailer(die_after=set(recipients)), now=now)
    first_link = _deliveries(ev["tenant_id"], ev["event_id"])[alert.delivery_id(recipients[0])]["link_id"]
    assert alert.handle_analyzed(data=_msg(ev), now=now + dt.timedelta(seconds=alert.SENDING_LEASE_S + 1)) == "sent:1"
    copies = _mail(smtp_sink, recipients)[recipients[0]]
    assert len(copies) == 2
    assert copies[0]["Message-ID"] == copies[1]["Message-ID"] == alert.message_id(ev["event_id"], recipients[0])
    assert clients.firestore().collection("links").document(first_link).get().to_dict()["revoked"] is False


def test_lifecycle_event_is_not_alerted_until_every_recipient_is_sent(fenv, smtp_sink):
    from vigint import alert, ingest, pipeline

    recipients = _recipients(2)
    creds = fenv.provision(recipients=recipients)
    lc = Lifecycle(creds, fenv.media, [b"unused: a start has no segments"], start=FIXTURE_START)
    start = lc.message(0, "start")
    lc.upload([start])
    data, attrs = signed(creds, start)
    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-0") == "created"
    [analyzed] = fenv.pull("analyzed")
    t, e = creds["tenant_id"], lc.event_id
    now = FIXTURE_START + dt.timedelta(seconds=3)
    with pytest.raises(Killed):
        alert.handle_analyzed(data=analyzed.data, mailer=_mailer(die_before={recipients[0]}), now=now)
    with pytest.raises(pipeline.InProgress):
        alert.handle_analyzed(data=analyzed.data, now=now + dt.timedelta(seconds=1))
    doc = _doc(t, e)
    assert doc["alert"]["alerted"] is True and doc.get("status") != "alerted"
    assert doc["timeline"]["alert_sent"]  # the first e-mail the server accepted (the second recipient's)
    assert alert.handle_analyzed(data=analyzed.data, now=now + dt.timedelta(seconds=alert.SENDING_LEASE_S + 1)) \
        == "sent:1"
    assert _doc(t, e)["status"] == "alerted"
    assert {r: len(m) for r, m in _mail(smtp_sink, recipients).items()} == {r: 1 for r in recipients}


class _ReadSpy:
    """Records the paths every optimistic read-modify-write reads (wraps the real class; reads still go to
    the emulator)."""

    def __init__(self, monkeypatch):
        from vigint import pipeline

        self.paths: list[str] = []
        real_get = pipeline.OptimisticTransaction.get
        spy = self

        def get(tx, ref):
            spy.paths.append(ref.path)
            return real_get(tx, ref)

        monkeypatch.setattr(pipeline.OptimisticTransaction, "get", get)


@pytest.mark.parametrize("cooldown", [0, 3600])
def test_cooldown_document_read_and_written_only_with_a_cooldown(fenv, smtp_sink, monkeypatch, cooldown):
    from vigint import alert, analyze, clients, pipeline, provisioning

    recipients = _recipients(1)
    creds_ = fenv.provision(recipients=recipients, cooldown_seconds=cooldown, threshold=2)
    t = creds_["tenant_id"]
    spy = _ReadSpy(monkeypatch)
    low = fenv.ingested_event(creds_, labels=("bird",))  # threat level below the threshold: does not alert
    analyze.handle_ingested(data=_msg(low))
    assert alert.handle_analyzed(data=_msg(low)) == "not_alerted"
    ev = fenv.ingested_event(provisioning.credentials(t, "nuc-1", 1))
    analyze.handle_ingested(data=_msg(ev))
    assert alert.handle_analyzed(data=_msg(ev)) == "sent:1"
    cool_path = pipeline.tenant_ref(t).collection("cooldowns").document("lobby").path
    cooldowns = [d.id for d in pipeline.tenant_ref(t).collection("cooldowns").stream()]
    if cooldown:
        assert spy.paths.count(cool_path) == 1  # read once: for the event that alerts
        assert cooldowns == ["lobby"]
        assert clients.firestore().document(cool_path).get().to_dict()["event_id"] == ev["event_id"]
    else:
        assert cool_path not in spy.paths and cooldowns == []


def test_duplicate_deliveries_in_parallel_neither_stall_nor_abort(fenv, smtp_sink):
    """Eight deliveries of one verdict at once, plus eight other events of the same camera at once (cooldown
    0): every decision commits; a delivery whose recipient another one is sending answers InProgress (Pub/Sub
    redelivers it), none fails otherwise; one e-mail per recipient and event; quick."""
    from vigint import alert, analyze, pipeline, provisioning

    recipients = _recipients(2)
    ev = _analysed_event(fenv, recipients)
    creds = provisioning.credentials(ev["tenant_id"], "nuc-1", 1)
    others = [fenv.ingested_event(creds) for _ in range(8)]
    for o in others:
        analyze.handle_ingested(data=_msg(o))
    outcomes, errors = [], []

    def run(e):
        try:
            outcomes.append(alert.handle_analyzed(data=_msg(e)))
        except pipeline.InProgress:
            outcomes.append("in_progress")
        except Exception as exc:  # noqa: BLE001 - recorded and asserted on below
            errors.append(f"{type(exc).__name__}: {exc}")

    t0 = time.monotonic()
    start_and_join([threading.Thread(target=run, args=(e,)) for e in [ev] * 8 + others])
    took = time.monotonic() - t0
    assert errors == []
    assert len(outcomes) == 16
    for e in [ev] + others:  # the redeliveries of whatever answered InProgress
        assert alert.handle_analyzed(data=_msg(e)) == "sent:0"
    mail = _mail(smtp_sink, recipients)
    assert {r: sorted(m["X-Vigint-Event-Id"] for m in mail[r]) for r in recipients} \
        == {r: sorted(e["event_id"] for e in [ev] + others) for r in recipients}
    assert all(_doc(e["tenant_id"], e["event_id"])["status"] == "alerted" for e in [ev] + others)
    assert [d.id for d in pipeline.tenant_ref(ev["tenant_id"]).collection("cooldowns").stream()] == []
    assert took < 20, f"16 parallel deliveries took {took:.1f} s"


def test_one_smtp_attempt_is_bounded_in_total_not_only_per_read():
    """A server that answers its greeting one byte at a time, each within the socket timeout, is cut off at
    the attempt's deadline (the lease's premise)."""
    from vigint.mailer import Mailer

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    stop = threading.Event()

    def drip():
        conn, _ = srv.accept()
        with conn:
            for byte in b"220 slow.example ESMTP " + b"x" * 200:
                if stop.is_set():
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.2)

    threading.Thread(target=drip, daemon=True).start()
    mailer = Mailer("127.0.0.1", srv.getsockname()[1], timeout_s=1.0, retry_attempts=1)
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["To"], msg["From"], msg["Subject"] = "a@example.com", "b@example.com", "x"
    msg.set_content("x")
    t0 = time.monotonic()
    with pytest.raises(OSError):
        mailer.send(msg)
    took = time.monotonic() - t0
    stop.set()
    srv.close()
    assert 0.9 <= took < 2.5, took


# ------------------------------------------------------------------- the hand-on to analyze and alert (ingest)


def test_v1_event_stored_but_not_handed_on_is_handed_on_at_its_redelivery(fenv, monkeypatch):
    """ingest killed after its Firestore write, while publishing the follow-on: the claim it leaves makes the
    redelivery come back (InProgress) until the claim's short lease lapses; then the redelivery publishes."""
    from google.cloud import firestore as fs

    from vigint import ingest, pipeline

    creds = fenv.provision()
    ev = fenv.event(creds)
    fenv.upload_media(creds["tenant_id"], creds["device_id"], ev["event_id"])
    data, attrs = fenv.message(creds, ev)
    real_publish = pipeline.publish_follow_on

    def dies(*a, **kw):
        raise Killed

    monkeypatch.setattr(pipeline, "publish_follow_on", dies)
    with pytest.raises(Killed):
        ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-1")
    ref = pipeline.event_ref(creds["tenant_id"], ev["event_id"])
    # What kill -9 leaves: the claim stamped (publish_once's release on the way out never ran), no flag.
    ref.update({"claims.publish_ingested": fs.SERVER_TIMESTAMP})
    monkeypatch.setattr(pipeline, "publish_follow_on", real_publish)
    with pytest.raises(pipeline.InProgress):
        ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-1")
    assert fenv.pull("ingested", 0.3) == []
    lapsed = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=pipeline.PUBLISH_LEASE_S + 1)
    ref.update({"claims.publish_ingested": lapsed})
    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-1") == "duplicate"
    assert len(fenv.pull("ingested")) == 1
    assert ref.get().to_dict()["published"]["ingested"] is True
    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-1") == "duplicate"
    assert fenv.pull("ingested", 0.3) == []
    assert pipeline.PUBLISH_LEASE_S <= 60


def test_v2_message_stored_but_not_handed_on_is_handed_on_at_its_redelivery(fenv, monkeypatch):
    from vigint import ingest, pipeline

    creds = fenv.provision()
    lc = Lifecycle(creds, fenv.media, [b"unused: a start has no segments"], start=FIXTURE_START)
    start = lc.message(0, "start")
    lc.upload([start])
    data, attrs = signed(creds, start)
    real_publish = pipeline.publish_follow_on

    def dies(*a, **kw):
        raise Killed

    monkeypatch.setattr(pipeline, "publish_follow_on", dies)
    with pytest.raises(Killed):
        ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-0")
    assert _doc(creds["tenant_id"], lc.event_id)["seq"] == 0  # stored
    monkeypatch.setattr(pipeline, "publish_follow_on", real_publish)
    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="m-0") == "duplicate"
    [analyzed] = fenv.pull("analyzed")
    assert json.loads(analyzed.data)["verdict"] == "detections"
    assert len(fenv.pull("ingested")) == 1


def test_webhook_killed_mid_post_is_redelivered_then_posted_once_after_its_lease(fenv, smtp_sink):
    """The same claim rules for the webhook: a claim left by a process killed mid-POST makes the message come
    back (InProgress) and the event is not alerted; past the webhook lease it is POSTed, once."""
    from vigint import alert, config, pipeline
    from tests.functions.test_alert_channels import _Hook

    hook = _Hook()
    try:
        recipients = _recipients(1)
        ev = _analysed_event(fenv, recipients)
        t, e = ev["tenant_id"], ev["event_id"]
        pipeline.tenant_ref(t).update({"alert.webhook": {"url": hook.url, "secret": "whsec-" + uuid.uuid4().hex}})
        now = FIXTURE_START + dt.timedelta(seconds=10)
        ref = pipeline.event_ref(t, e).collection("deliveries").document(alert.webhook_delivery_id(hook.url))
        # What a process killed while POSTing leaves behind.
        ref.create({"recipient": hook.url, "kind": "webhook", "status": "sending", "attempts": 1, "claimed_at": now,
                    "claim_id": "killed", "sent_at": None, "link_id": None})
        with pytest.raises(pipeline.InProgress):
            alert.handle_analyzed(data=_msg(ev), now=now + dt.timedelta(seconds=1))
        assert hook.requests == [] and _doc(t, e).get("status") != "alerted"
        assert len(_mail(smtp_sink, recipients)[recipients[0]]) == 1  # the e-mail is not held up by the webhook
        lease = alert.webhook_lease_s(config.settings().webhook_timeout_s)
        assert alert.handle_analyzed(data=_msg(ev), now=now + dt.timedelta(seconds=lease + 1)) == "sent:0"
        assert alert.handle_analyzed(data=_msg(ev), now=now + dt.timedelta(seconds=lease + 2)) == "sent:0"
    finally:
        hook.close()
    assert len(hook.requests) == 1
    assert ref.get().to_dict()["status"] == "sent" and _doc(t, e)["status"] == "alerted"


def test_a_claim_taken_over_between_attempts_stops_the_send():
    """``before_attempt`` runs before every attempt and wait; what it raises (the claim was lost) ends the send
    without another attempt."""
    from infra.local.stack import free_port
    from vigint import alert
    from vigint.mailer import Mailer

    calls = []

    def renew():
        calls.append(1)
        if len(calls) == 2:  # before the first back-off wait
            raise alert.ClaimLost("taken over")

    from email.message import EmailMessage

    msg = EmailMessage()
    msg["To"], msg["From"], msg["Subject"] = "a@example.com", "b@example.com", "x"
    msg.set_content("x")
    mailer = Mailer("127.0.0.1", free_port(), retry_attempts=3, retry_initial_s=0.01)  # nothing listens there
    with pytest.raises(alert.ClaimLost):
        mailer.send(msg, before_attempt=renew)
    assert mailer.last_attempts == 1 and len(calls) == 2
