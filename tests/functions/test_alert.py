"""alert and video_link against the emulators, fake-gcs-server and the real SMTP sink."""

from __future__ import annotations

import datetime as dt
import html
import json
import re

import pytest
import requests

from tests.functions.conftest import FIXTURE_START
from tests.functions.mailbox import by_recipient as _mail_for, recipients as _recipients


def _msg(ev: dict) -> bytes:
    return json.dumps({"tenant_id": ev["tenant_id"], "event_id": ev["event_id"]}).encode()


def _analysed_event(fenv, recipients, threshold=1, labels=("person",), **tenant_kw) -> dict:
    from vigint import analyze

    creds = fenv.provision(recipients=recipients, threshold=threshold, **tenant_kw)
    ev = fenv.ingested_event(creds, labels=labels)
    assert analyze.handle_ingested(data=_msg(ev)) == "analyzed:detections_only"
    return ev


def _event_doc(ev: dict) -> dict:
    from vigint import pipeline

    return pipeline.event_ref(ev["tenant_id"], ev["event_id"]).get().to_dict()


def _link(message) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    m = re.search(r"(http://\S+/v/([A-Za-z0-9_-]+))", text)
    assert m, text
    return m.group(1)


def test_one_email_per_recipient_despite_three_deliveries(fenv, smtp_sink):
    from vigint import alert

    recipients = _recipients(2)
    ev = _analysed_event(fenv, recipients)
    outcomes = [alert.handle_analyzed(data=_msg(ev)) for _ in range(3)]

    assert outcomes == ["sent:2", "sent:0", "sent:0"]
    mail = _mail_for(smtp_sink, recipients)
    assert {r: len(m) for r, m in mail.items()} == {r: 1 for r in recipients}
    doc = _event_doc(ev)
    assert doc["status"] == "alerted" and doc["alert"]["alerted"] is True
    from vigint import pipeline

    deliveries = {d.id: d.to_dict() for d in pipeline.event_ref(ev["tenant_id"], ev["event_id"]).collection("deliveries").stream()}
    assert set(deliveries) == {alert.delivery_id(r) for r in recipients}
    assert all(d["status"] == "sent" and d["attempts"] == 1 and d["link_id"] for d in deliveries.values())
    # One link per recipient, each a distinct token.
    links = {r: _link(m[0]) for r, m in mail.items()}
    assert len(set(links.values())) == 2


def test_below_threshold_sends_nothing(fenv, smtp_sink):
    from vigint import alert

    recipients = _recipients(1)
    ev = _analysed_event(fenv, recipients, threshold=3)  # person -> 2 < 3
    assert alert.handle_analyzed(data=_msg(ev)) == "not_alerted"
    assert _mail_for(smtp_sink, recipients) == {recipients[0]: []}
    decision = _event_doc(ev)["alert"]
    assert decision["alerted"] is False and "below the tenant's threshold 3" in decision["reason"]


def test_cooldown_per_camera(fenv, smtp_sink):
    from vigint import alert, analyze

    recipients = _recipients(1)
    first = _analysed_event(fenv, recipients, cooldown_seconds=3600)
    assert alert.handle_analyzed(data=_msg(first)) == "sent:1"
    from vigint import provisioning

    creds = provisioning.credentials(first["tenant_id"], "nuc-1", 1)
    second = fenv.ingested_event(creds)
    analyze.handle_ingested(data=_msg(second))
    assert alert.handle_analyzed(data=_msg(second)) == "not_alerted"
    assert "cooldown" in _event_doc(second)["alert"]["reason"]
    assert len(_mail_for(smtp_sink, recipients)[recipients[0]]) == 1


def test_email_structure(fenv, smtp_sink, media):
    from vigint import alert

    recipients = _recipients(1)
    ev = _analysed_event(fenv, recipients)
    alert.handle_analyzed(data=_msg(ev))
    (message,) = _mail_for(smtp_sink, recipients)[recipients[0]]

    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == "[Vigint] Medium threat: Person detected on lobby"
    assert message["Message-ID"] == alert.message_id(ev["event_id"], recipients[0])
    text_part, related = message.get_payload()
    assert text_part.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, image = related.get_payload()
    assert html_part.get_content_type() == "text/html"
    assert image.get_content_type() == "image/jpeg"
    assert image.get_content() == media["snapshot"]
    cid = image["Content-ID"].strip("<>")
    body_html = html_part.get_content()
    assert f'src="cid:{cid}"' in body_html

    text = text_part.get_content()
    link = _link(message)
    assert link.startswith(fenv.env["VIGINT_PUBLIC_BASE_URL"] + "/v/")
    assert html.escape(link) in body_html or link in body_html
    start = FIXTURE_START  # the event's start, 06:00 UTC the day before the run, written out in UTC
    assert f"{start:%A} {start.day} {start:%B %Y}, 06:00:00 UTC" in text
    from vigint import render  # the format itself, on a fixed instant (nothing here ages)

    assert render.utc_words(dt.datetime(2026, 11, 22, 7, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))) \
        == "Sunday 22 November 2026, 06:00:05 UTC"
    assert "lobby" in text and "No AI analysis" in text
    assert re.search(r"expires on \w+day \d+ \w+ \d{4}, \d\d:\d\d:\d\d UTC, 7 days after", text), text


def test_smtp_failure_raises_then_retry_sends_once(fenv, smtp_sink):
    from vigint import alert, links, pipeline
    from vigint.mailer import Mailer

    recipients = _recipients(1)
    ev = _analysed_event(fenv, recipients)
    dead = Mailer("127.0.0.1", 9, timeout_s=2)  # nothing listens on the discard port
    with pytest.raises(alert.DeliveryError):
        alert.handle_analyzed(data=_msg(ev), mailer=dead)
    ref = pipeline.event_ref(ev["tenant_id"], ev["event_id"]).collection("deliveries").document(alert.delivery_id(recipients[0]))
    failed = ref.get().to_dict()
    assert failed["status"] == "failed" and failed["attempts"] == 1
    assert _mail_for(smtp_sink, recipients)[recipients[0]] == []

    assert alert.handle_analyzed(data=_msg(ev)) == "sent:1"  # Pub/Sub's redelivery
    assert alert.handle_analyzed(data=_msg(ev)) == "sent:0"
    sent = ref.get().to_dict()
    assert sent["status"] == "sent" and sent["attempts"] == 2 and sent["link_id"] != failed["link_id"]
    from vigint import clients

    assert clients.firestore().collection("links").document(failed["link_id"]).get().get("revoked") is True
    (message,) = _mail_for(smtp_sink, recipients)[recipients[0]]
    assert links.link_id(_link(message).rsplit("/", 1)[1]) == sent["link_id"]


@pytest.fixture
def link_app(fenv):
    import functions_framework

    return functions_framework.create_app(target="video_link", source="functions/main.py", signature_type="http").test_client()


def test_link_page_plays_the_clip(fenv, smtp_sink, media, link_app, caplog):
    from vigint import alert, clients, links

    recipients = _recipients(1)
    ev = _analysed_event(fenv, recipients)
    alert.handle_analyzed(data=_msg(ev))
    url = _link(_mail_for(smtp_sink, recipients)[recipients[0]][0])
    token = url.rsplit("/", 1)[1]
    caplog.set_level("DEBUG")

    r = link_app.get(f"/v/{token}", headers={"User-Agent": "pytest-browser"})
    logged = "\n".join(rec.getMessage() for rec in caplog.records if not rec.name.startswith("urllib3"))
    assert "video_link: link" in logged
    assert token not in logged and "X-Goog-Signature" not in logged
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and f"media-src {fenv.env['STORAGE_EMULATOR_HOST']}" in csp
    page = r.get_data(as_text=True)
    assert "Person detected on lobby" in page
    video = re.search(r'<video controls playsinline[^>]*\ssrc="([^"]+)"', page)
    assert video, page
    clip_url = html.unescape(video.group(1))
    assert "X-Goog-Signature=" in clip_url and ev["clip"]["object"] in clip_url
    assert "X-Goog-Expires=60&" in clip_url  # playback URLs live a minute: a revocation takes effect within one
    from cryptography.hazmat.primitives import serialization

    from tests.functions.test_edge_api import _verify_v4

    key = json.loads(open(fenv.env["GOOGLE_APPLICATION_CREDENTIALS"]).read())["private_key"]
    public_key = serialization.load_pem_private_key(key.encode(), None).public_key()
    assert _verify_v4(clip_url, public_key, "GET", {})  # a genuine V4 signature for exactly this object
    assert not _verify_v4(clip_url.replace("clip.mp4", "snapshot.jpg"), public_key, "GET", {})
    got = requests.get(clip_url, timeout=10)
    assert got.status_code == 200 and got.content == media["clip"]
    img = re.search(r'<img src="([^"]+)"', page)
    assert requests.get(html.unescape(img.group(1)), timeout=10).content == media["snapshot"]

    access = list(clients.firestore().collection("links").document(links.link_id(token)).collection("access").stream())
    assert [(a.get("outcome"), a.get("user_agent")) for a in access] == [("ok", "pytest-browser")]


def test_expired_revoked_and_unknown_links(fenv, smtp_sink, link_app):
    from vigint import alert, clients, links, video_link

    recipients = _recipients(2)
    ev = _analysed_event(fenv, recipients)
    alert.handle_analyzed(data=_msg(ev))
    mail = _mail_for(smtp_sink, recipients)
    token_a = _link(mail[recipients[0]][0]).rsplit("/", 1)[1]
    token_b = _link(mail[recipients[1]][0]).rsplit("/", 1)[1]

    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=7, minutes=1)
    page, status, headers = video_link.handle(method="GET", path=f"/v/{token_a}", now=later)
    assert status == 410
    for secret in ("X-Goog", "<video", ev["event_id"], ev["camera_id"], ev["tenant_id"], "Person"):
        assert secret not in page
    assert headers["Cache-Control"] == "no-store"
    # ... while still valid just before expiry.
    assert video_link.handle(method="GET", path=f"/v/{token_a}", now=later - dt.timedelta(minutes=2))[1] == 200

    links.revoke(links.link_id(token_b))
    r = link_app.get(f"/v/{token_b}")
    assert r.status_code == 410 and "X-Goog" not in r.get_data(as_text=True)

    unknown = link_app.get("/v/" + "A" * 43)
    assert unknown.status_code == 404
    assert ev["event_id"] not in unknown.get_data(as_text=True)
    assert link_app.get("/v/short").status_code == 404
    assert link_app.get("/").status_code == 404

    outcomes = [a.get("outcome") for a in clients.firestore().collection("links").document(links.link_id(token_a))
                .collection("access").stream()]
    assert sorted(outcomes) == ["expired", "ok"]


def test_alert_entry_point_through_functions_framework(fenv, smtp_sink):
    """The real CloudEvent entry point, delivered twice: one e-mail."""
    import base64

    import functions_framework
    from cloudevents.conversion import to_structured
    from cloudevents.http import CloudEvent

    recipients = _recipients(1)
    ev = _analysed_event(fenv, recipients)
    app = functions_framework.create_app(target="alert", source="functions/main.py", signature_type="cloudevent")
    client = app.test_client()
    for n in range(2):
        event = CloudEvent(
            {"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "//pubsub.googleapis.com/test"},
            {"message": {"data": base64.b64encode(_msg(ev)).decode(), "attributes": {}, "messageId": str(n)}},
        )
        headers, body = to_structured(event)
        assert client.post("/", headers=headers, data=body).status_code == 200
    assert len(_mail_for(smtp_sink, recipients)[recipients[0]]) == 1


def test_alert_marks_analysis_unavailable(fenv, smtp_sink, monkeypatch):
    """Gemini answered nonsense: the alert still goes out, from the detections, and says so."""
    from tests.fakes.gemini_server import FakeGemini
    from vigint import alert, analyze, clients

    recipients = _recipients(1)
    creds = fenv.provision(recipients=recipients)
    ev = fenv.ingested_event(creds)
    with FakeGemini(mode="malformed") as fake:
        monkeypatch.setenv("GEMINI_API_KEY", "test-key-not-real")
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.base_url)
        clients.reset()
        assert analyze.handle_ingested(data=_msg(ev)) == "analyzed:error"
    assert alert.handle_analyzed(data=_msg(ev)) == "sent:1"
    (message,) = _mail_for(smtp_sink, recipients)[recipients[0]]
    assert message["Subject"].endswith("(analysis unavailable)")
    assert "AI analysis unavailable" in message.get_body(preferencelist=("plain",)).get_content()
