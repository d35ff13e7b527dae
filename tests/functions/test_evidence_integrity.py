"""Stored evidence is immutable and verifiable (issue 14), on the real stack (emulators, fake-gcs-server, SMTP sink).

fake-gcs-server checks no signature and ignores ``x-goog-if-generation-match``, ``x-goog-content-length-range``
and ``Content-MD5`` on a signed PUT (tried: each PUT below that Cloud Storage refuses, it stores). So what Cloud
Storage enforces from a URL's signed headers is shown here by verifying the URL's signature over those headers
with the stack's service-account key; what our own code enforces (``/v1/uploads`` never signing a stored object
again, ingest comparing stored objects' metadata with the message) is shown end to end.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from tests.functions.conftest import FIXTURE_START
from tests.functions.test_edge_api import _auth, _verify_v4

MD5_HEADERS = ("content-md5", "x-goog-content-length-range", "x-goog-if-generation-match")


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture
def api(fenv):
    import functions_framework

    app = functions_framework.create_app(target="edge_api", source="functions/main.py", signature_type="http")
    return app.test_client()


@pytest.fixture
def public_key(fenv):
    from cryptography.hazmat.primitives import serialization

    key_info = json.loads(open(fenv.env["GOOGLE_APPLICATION_CREDENTIALS"]).read())
    return serialization.load_pem_private_key(key_info["private_key"].encode(), None).public_key()


def _bucket():
    from vigint import clients, config

    return clients.storage().bucket(config.settings().bucket)


def _files(media, md5=True) -> list[dict]:
    files = [{"name": "clip.mp4", "content_type": "video/mp4", "bytes": len(media["clip"])},
             {"name": "snapshot.jpg", "content_type": "image/jpeg", "bytes": len(media["snapshot"])}]
    if md5:
        files[0]["md5"], files[1]["md5"] = _md5(media["clip"]), _md5(media["snapshot"])
    return files


def _verifies(url, public_key, headers) -> bool:
    try:
        return _verify_v4(url, public_key, "PUT", headers)
    except KeyError:  # a signed header the request does not send: Cloud Storage refuses the request
        return False


# ------------------------------------------------------------------------------------------------ upload URLs
def test_upload_url_binds_create_only_the_size_and_the_md5(fenv, api, media, public_key):
    creds = fenv.provision()
    r = api.post("/v1/uploads", headers=_auth(creds), json={"event_id": "evt_0123456789", "files": _files(media)})
    assert r.status_code == 200, r.get_json()
    uploads = {u["name"]: u for u in r.get_json()["uploads"]}
    assert r.get_json()["stored"] == []
    clip = uploads["clip.mp4"]
    assert clip["headers"] == {"Content-Type": "video/mp4", "Content-MD5": _md5(media["clip"]),
                               "x-goog-content-length-range": f"{len(media['clip'])},{len(media['clip'])}",
                               "x-goog-if-generation-match": "0"}
    signed = dict(parse_qsl(urlsplit(clip["url"]).query))["X-Goog-SignedHeaders"].split(";")
    assert set(MD5_HEADERS) <= set(signed) and {"content-type", "host"} <= set(signed)

    # The headers handed out are exactly the ones signed: the request the device makes verifies ...
    assert _verifies(clip["url"], public_key, clip["headers"])
    # ... and none can be changed or left out: an oversized body (another length range), other bytes (another
    # MD5) or a PUT that may replace a stored object (no precondition, or another generation) all fail it.
    h = clip["headers"]
    assert not _verifies(clip["url"], public_key, {**h, "x-goog-content-length-range": f"0,{512 * 1024 * 1024}"})
    assert not _verifies(clip["url"], public_key, {**h, "Content-MD5": _md5(media["clip"] + b"x")})
    assert not _verifies(clip["url"], public_key, {k: v for k, v in h.items() if k != "x-goog-if-generation-match"})
    assert not _verifies(clip["url"], public_key, {**h, "x-goog-if-generation-match": "1"})
    assert not _verifies(clip["url"], public_key, {k: v for k, v in h.items() if k != "Content-MD5"})

    # The device's PUT with those headers stores the bytes (fake-gcs computes the MD5 Cloud Storage would check).
    put = requests.put(clip["url"], data=media["clip"], headers=clip["headers"], timeout=10)
    assert put.status_code == 200, put.text
    assert _bucket().get_blob(clip["object"]).md5_hash == _md5(media["clip"])


def test_upload_without_md5_still_binds_size_and_precondition(fenv, api, media, public_key):
    """Devices that predate ``md5`` keep working; their URLs still bind the size and create-only."""
    creds = fenv.provision()
    r = api.post("/v1/uploads", headers=_auth(creds),
                 json={"event_id": "evt_0123456789", "files": _files(media, md5=False)})
    assert r.status_code == 200, r.get_json()
    snap = {u["name"]: u for u in r.get_json()["uploads"]}["snapshot.jpg"]
    signed = dict(parse_qsl(urlsplit(snap["url"]).query))["X-Goog-SignedHeaders"].split(";")
    assert "content-md5" not in signed
    assert {"x-goog-content-length-range", "x-goog-if-generation-match"} <= set(signed)
    assert _verifies(snap["url"], public_key, snap["headers"])


@pytest.mark.parametrize("md5", ["abc", "A" * 24, "A" * 22 + "=", 5])
def test_a_malformed_md5_is_a_400_naming_the_field(fenv, api, media, md5):
    creds = fenv.provision()
    files = _files(media)
    files[1]["md5"] = md5
    r = api.post("/v1/uploads", headers=_auth(creds), json={"event_id": "evt_0123456789", "files": files})
    assert r.status_code == 400 and r.get_json()["field"] == "files.1.md5"


def test_a_stored_object_is_never_signed_again_and_keeps_its_bytes(fenv, api, media):
    """The overwrite attempt: the device asks again for an event whose clip is stored. No URL for the clip
    comes back (only what is stored: its size and MD5, so a device that lost the answer can tell it was its
    own upload), the snapshot still gets one, and the stored clip keeps its bytes."""
    creds = fenv.provision()
    body = {"event_id": "evt_0123456789", "files": _files(media)}
    first = {u["name"]: u for u in api.post("/v1/uploads", headers=_auth(creds), json=body).get_json()["uploads"]}
    clip = first["clip.mp4"]
    assert requests.put(clip["url"], data=media["clip"], headers=clip["headers"], timeout=10).status_code == 200

    other = bytes(reversed(media["clip"]))  # same size, other bytes
    again = api.post("/v1/uploads", headers=_auth(creds), json={
        "event_id": "evt_0123456789",
        "files": [{"name": "clip.mp4", "content_type": "video/mp4", "bytes": len(other), "md5": _md5(other)},
                  _files(media)[1]]}).get_json()
    assert [u["name"] for u in again["uploads"]] == ["snapshot.jpg"]
    (stored,) = again["stored"]
    assert stored["name"] == "clip.mp4" and stored["object"] == clip["object"]
    assert stored["bytes"] == len(media["clip"]) and stored["md5"] == _md5(media["clip"])
    assert "url" not in stored
    assert _bucket().get_blob(clip["object"]).download_as_bytes() == media["clip"]


# ------------------------------------------------------------------------------------------------ ingest
def _ingest(fenv, creds, ev):
    from vigint import ingest

    data, attrs = fenv.message(creds, ev)
    return ingest.handle_edge_event(data=data, attributes=attrs, message_id=f"m-{ev['event_id']}")


def _doc(ev):
    from vigint import pipeline

    return pipeline.event_ref(ev["tenant_id"], ev["event_id"]).get().to_dict()


def test_ingest_records_matching_objects_as_ok(fenv, media):
    creds = fenv.provision()
    ev = fenv.event(creds)
    ev["clip"]["md5"], ev["snapshot"]["md5"] = _md5(media["clip"]), _md5(media["snapshot"])
    fenv.upload_media(creds["tenant_id"], creds["device_id"], ev["event_id"])
    assert _ingest(fenv, creds, ev) == "created"
    assert _doc(ev)["integrity"] == {"status": "ok", "checked": 2, "mismatches": 0, "objects": []}


def test_ingest_flags_other_bytes_an_oversized_and_a_missing_object_and_the_alert_and_page_show_it(
        fenv, media, smtp_sink):
    """Other bytes of the same size put straight into the bucket (as an overwrite on Cloud Storage would need),
    a bigger snapshot, and then a message signed by the device claiming the original hashes: stored, flagged on
    the event, said in the alert e-mail and on the link page."""
    import uuid

    from vigint import alert, analyze, video_link

    recipient = f"guard-{uuid.uuid4().hex[:8]}@example.com"
    creds = fenv.provision(recipients=[recipient])
    ev = fenv.event(creds)
    ev["clip"]["md5"], ev["snapshot"]["md5"] = _md5(media["clip"]), _md5(media["snapshot"])
    bucket = _bucket()
    bucket.blob(ev["clip"]["object"]).upload_from_string(bytes(reversed(media["clip"])), content_type="video/mp4")
    bucket.blob(ev["snapshot"]["object"]).upload_from_string(media["snapshot"] + b"\0" * 10, content_type="image/jpeg")
    assert _ingest(fenv, creds, ev) == "created"

    integrity = _doc(ev)["integrity"]
    assert integrity["status"] == "mismatch" and integrity["checked"] == 2 and integrity["mismatches"] == 2
    problems = {p["object"].rsplit("/", 1)[-1]: p for p in integrity["objects"]}
    assert problems["clip.mp4"]["problem"] == "md5"
    assert problems["clip.mp4"]["claimed_md5"] == _md5(media["clip"])
    assert problems["clip.mp4"]["stored_md5"] == _md5(bytes(reversed(media["clip"])))
    assert problems["snapshot.jpg"]["problem"] == "size"
    assert (problems["snapshot.jpg"]["claimed_bytes"], problems["snapshot.jpg"]["stored_bytes"]) == (
        len(media["snapshot"]), len(media["snapshot"]) + 10)

    data = json.dumps({"tenant_id": ev["tenant_id"], "event_id": ev["event_id"]}).encode()
    assert analyze.handle_ingested(data=data) == "analyzed:detections_only"
    assert alert.handle_analyzed(data=data) == "sent:1"
    (message,) = [m for m in smtp_sink.messages() if m["To"] == recipient]
    assert message["Subject"].endswith("(evidence check failed)")
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "EVIDENCE CHECK FAILED: 2 stored files differ from what the device recorded: snapshot.jpg (another " \
           "size), clip.mp4 (other bytes: MD5 differs)." in text
    html_body = message.get_body(preferencelist=("html",)).get_content()
    assert "Evidence check failed:" in html_body

    token = re.search(r"/v/([A-Za-z0-9_-]+)", text).group(1)
    page, status, _ = video_link.handle(method="GET", path=f"/v/{token}")
    assert status == 200
    assert re.search(r'<p id="integrity"[^>]*>\s*<strong>Evidence check failed:</strong> <span id="integrity-note">2 stored files differ',
                     page), page
    state, status, _ = video_link.handle(method="GET", path=f"/v/{token}/state.json")
    assert status == 200 and "2 stored files differ" in json.loads(state)["integrity_note"]

    # The tenant API shows it on the event too (detail and list), as the stored problems.
    from vigint import api_keys, tenant_api

    key, _ = api_keys.create_key(creds["tenant_id"], role="viewer", name="auditor")
    for path in (f"/v1/events/{ev['event_id']}", "/v1/events"):
        body, status = tenant_api.handle(method="GET", path=path, headers={"Authorization": f"Bearer {key}"},
                                         query={}, body=b"")[:2]
        assert status == 200, body
        shown = body["integrity"] if "integrity" in body else body["events"][0]["integrity"]
        assert (shown["status"], shown["mismatches"]) == ("mismatch", 2)
        assert sorted(p["problem"] for p in shown["objects"]) == ["md5", "size"]


def test_a_matching_event_shows_no_warning(fenv, media, smtp_sink):
    import uuid

    from vigint import alert, analyze, video_link

    recipient = f"guard-{uuid.uuid4().hex[:8]}@example.com"
    creds = fenv.provision(recipients=[recipient])
    ev = fenv.event(creds)
    fenv.upload_media(creds["tenant_id"], creds["device_id"], ev["event_id"])
    assert _ingest(fenv, creds, ev) == "created"  # no md5 claimed (an older device): sizes compared
    assert _doc(ev)["integrity"]["status"] == "ok"
    data = json.dumps({"tenant_id": ev["tenant_id"], "event_id": ev["event_id"]}).encode()
    analyze.handle_ingested(data=data)
    assert alert.handle_analyzed(data=data) == "sent:1"
    (message,) = [m for m in smtp_sink.messages() if m["To"] == recipient]
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "EVIDENCE" not in text and "evidence" not in message["Subject"]
    token = re.search(r"/v/([A-Za-z0-9_-]+)", text).group(1)
    page, status, _ = video_link.handle(method="GET", path=f"/v/{token}")
    assert status == 200 and re.search(r'<p id="integrity"[^>]*hidden', page)


def test_lifecycle_integrity_accumulates_and_a_mismatch_stays(fenv, media):
    """Version 2: each message's own objects are checked once; a missing segment flags the event, and later
    messages whose objects match keep the flag and add to the count."""
    from tests.functions.v2 import Lifecycle, signed, ts_segments
    from vigint import ingest

    creds = fenv.provision()
    lc = Lifecycle(creds, media, ts_segments(1), FIXTURE_START)
    msgs = lc.standard(updates=2)  # start (snapshot), 2 updates (snapshot + segment), end (snapshot, segment, clip)
    lc.upload(msgs)
    _bucket().blob(msgs[1]["segments"][0]["object"]).delete()
    got = []
    for msg in msgs:
        data, attrs = signed(creds, msg)
        got.append(ingest.handle_edge_event(data=data, attributes=attrs, message_id=f"m{msg['seq']}"))
        if msg["seq"] == 0:
            assert _doc({"tenant_id": creds["tenant_id"], "event_id": lc.event_id})["integrity"]["status"] == "ok"
    assert got == ["created", "applied", "applied", "applied"]
    integrity = _doc({"tenant_id": creds["tenant_id"], "event_id": lc.event_id})["integrity"]
    assert integrity["status"] == "mismatch" and integrity["mismatches"] == 1
    assert integrity["checked"] == 1 + 2 + 2 + 3
    (problem,) = integrity["objects"]  # the start's and the updates' snapshots, the end's clip: all matched
    assert problem["object"].endswith("/segments/00000.ts") and problem["problem"] == "missing"
    assert problem["stored_bytes"] is None
    # A redelivery checks nothing new and counts nothing twice.
    data, attrs = signed(creds, msgs[-1])
    assert ingest.handle_edge_event(data=data, attributes=attrs, message_id="m3") == "duplicate"
    assert _doc({"tenant_id": creds["tenant_id"], "event_id": lc.event_id})["integrity"]["checked"] == 8


def test_a_storage_outage_during_the_check_raises_and_the_redelivery_stores_the_event(fenv, media, monkeypatch):
    """Cloud Storage unreachable while ingest checks the objects: the message is not stored (nor dropped) but
    raises, so Pub/Sub redelivers it; once storage answers again the redelivery creates the event."""
    import socket

    from vigint import clients, ingest, storage

    creds = fenv.provision()
    ev = fenv.event(creds)
    fenv.upload_media(creds["tenant_id"], creds["device_id"], ev["event_id"])
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setattr(storage, "METADATA_RETRY_S", 0.5)
    monkeypatch.setattr(storage, "METADATA_TIMEOUT_S", 0.5)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{dead}")
    clients.reset()
    with pytest.raises(Exception) as err:
        _ingest(fenv, creds, ev)
    assert "dropped" not in str(err.value)
    assert _doc(ev) is None
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fenv.env["STORAGE_EMULATOR_HOST"])
    clients.reset()
    assert _ingest(fenv, creds, ev) == "created"
    assert _doc(ev)["integrity"]["status"] == "ok"
