"""Evidence export (issue 14): ``POST /v1/events/{id}/export`` makes a signed package in the bucket; it
verifies offline with ``python -m vigint.admin verify-export`` against the tenant's key, and fails once one
byte of the clip is changed. Against the emulators and fake-gcs-server, with the local ECDSA P-256 key the
stack generated (Cloud KMS in Google Cloud)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import requests

from tests.functions.conftest import FIXTURE_START

T = dt.timedelta
REPO = Path(__file__).resolve().parents[2]


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _api(creds, role="admin"):
    from vigint import api_keys, tenant_api

    key, _ = api_keys.create_key(creds["tenant_id"], role=role, name=f"{role}-user")

    def call(method, path):
        return tenant_api.handle(method=method, path=path, headers={"Authorization": f"Bearer {key}"}, query={},
                                 body=b"")[:2]

    return call


def _verify(path: Path, *extra: str) -> subprocess.CompletedProcess:
    # No emulator or project variables: the check is offline.
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'functions'}"}
    return subprocess.run([sys.executable, "-m", "vigint.admin", "verify-export", str(path), *extra], env=env,
                          capture_output=True, text=True, timeout=60)


def _rewrite(package: bytes, name: str, change) -> bytes:
    """The package with ``name``'s bytes replaced by ``change(bytes)`` (a well-formed zip, CRCs recomputed)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(package)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info.filename, change(data) if info.filename == name else data)
    return out.getvalue()


def test_export_verifies_and_fails_after_one_byte_of_the_clip_changes(fenv, smtp_sink, tmp_path):
    from vigint import alert, analyze, ingest, pipeline, video_link

    recipient = f"ex-{uuid.uuid4().hex[:8]}@example.com"
    creds = fenv.provision(recipients=[recipient])
    tenant_id = creds["tenant_id"]
    t0 = FIXTURE_START
    ev = fenv.event(creds, camera_id="garage", start_time=_iso(t0), end_time=_iso(t0 + T(seconds=2)))
    fenv.upload_media(tenant_id, creds["device_id"], ev["event_id"])
    data, attrs = fenv.message(creds, ev)
    assert ingest.handle_edge_event(data=data, attributes=attrs, now=t0 + T(seconds=5)) == "created"
    msg = json.dumps({"tenant_id": tenant_id, "event_id": ev["event_id"]}).encode()
    analyze.handle_ingested(data=msg)
    assert alert.handle_analyzed(data=msg, now=t0 + T(seconds=10)) == "sent:1"
    (mail,) = [m for m in smtp_sink.messages() if m["To"] == recipient]
    token = next(w for w in mail.get_body(preferencelist=("plain",)).get_content().split() if "/v/" in w)
    token = token.rstrip(".").rsplit("/v/", 1)[1]
    video_link.handle(method="GET", path=f"/v/{token}", remote_addr="198.51.100.7", user_agent="curl/8",
                      now=t0 + T(minutes=1))

    admin, viewer = _api(creds), _api(creds, "viewer")
    assert viewer("POST", f"/v1/events/{ev['event_id']}/export")[1] == 403
    assert admin("POST", "/v1/events/evt_NOSUCHEVENT0000/export")[1] == 404
    out, status = admin("POST", f"/v1/events/{ev['event_id']}/export")
    assert status == 201, out
    assert out["files"] == 4 and out["mismatches"] == 0 and out["object"].startswith(f"tenants/{tenant_id}/exports/")
    key, status = viewer("GET", "/v1/export-key")
    assert status == 200 and key["key_id"] == out["key_id"] and "BEGIN PUBLIC KEY" in key["public_key_pem"]
    package = requests.get(out["url"], timeout=30).content
    assert hashlib.sha256(package).hexdigest() and len(package) == out["bytes"]
    pem = tmp_path / "tenant-key.pem"
    pem.write_text(key["public_key_pem"])

    # The package's contents: clip and snapshot byte for byte, the record, the access log of the link.
    with zipfile.ZipFile(io.BytesIO(package)) as zf:
        assert sorted(zf.namelist()) == ["access_log.json", "clip.mp4", "event.json", "manifest.json",
                                         "manifest.json.sig", "public_key.pem", "snapshot.jpg"]
        assert zf.read("clip.mp4") == fenv.media["clip"] and zf.read("snapshot.jpg") == fenv.media["snapshot"]
        record = json.loads(zf.read("event.json"))
        assert record["event_id"] == ev["event_id"] and record["analysis"] and record["detections"]
        assert record["alert"]["alerted"] is True
        (link,) = json.loads(zf.read("access_log.json"))
        assert link["recipient"] == recipient and [a["remote_addr"] for a in link["accesses"]] == ["198.51.100.7"]
        assert link["access_count"] == 1 and link["revoked"] is False and link["revoked_by"] is None
        manifest = json.loads(zf.read("manifest.json"))
        assert {f["name"]: f["sha256"] for f in manifest["files"]}["clip.mp4"] == ev["clip"]["sha256"]
    good = tmp_path / "good.zip"
    good.write_bytes(package)
    ok = _verify(good, "--public-key", str(pem))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True and json.loads(ok.stdout)["files"] == 4

    # One byte of the clip changed, in place (the zip's own CRC no longer matches) ...
    offset = package.index(fenv.media["clip"][:64]) + 100
    flipped = tmp_path / "flipped.zip"
    flipped.write_bytes(package[:offset] + bytes([package[offset] ^ 0x01]) + package[offset + 1:])
    bad = _verify(flipped, "--public-key", str(pem))
    assert bad.returncode == 1 and "clip.mp4" in bad.stderr
    # ... and in a rebuilt, well-formed zip (only the manifest's hash catches it).
    rebuilt = tmp_path / "rebuilt.zip"
    rebuilt.write_bytes(_rewrite(package, "clip.mp4", lambda b: b[:100] + bytes([b[100] ^ 0x01]) + b[101:]))
    bad = _verify(rebuilt, "--public-key", str(pem))
    assert bad.returncode == 1 and "clip.mp4: sha256" in bad.stderr
    # A manifest edited to match the changed clip breaks the signature.
    with zipfile.ZipFile(rebuilt) as zf:
        changed = hashlib.sha256(zf.read("clip.mp4")).hexdigest()
    forged = tmp_path / "forged.zip"
    forged.write_bytes(_rewrite(rebuilt.read_bytes(), "manifest.json",
                                lambda b: b.replace(ev["clip"]["sha256"].encode(), changed.encode())))
    bad = _verify(forged, "--public-key", str(pem))
    assert bad.returncode == 1 and "signature" in bad.stderr and "clip.mp4" not in bad.stderr
    # A package signed by another key does not verify against the tenant's key.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "other.pem").write_bytes(other)
    assert _verify(good, "--public-key", str(tmp_path / "other.pem")).returncode == 1

    # Audited.
    audit = sorted(pipeline.tenant_ref(tenant_id).collection("audit").stream(), key=lambda d: d.id)
    # (the page opened through the e-mailed link is an event.view by its recipient, issue 11)
    assert [(d.get("action"), d.get("actor")["kind"]) for d in audit if d.get("action") == "event.view"] == [
        ("event.view", "link")]
    audit = [d for d in audit if d.get("action") != "event.view"]
    assert [(d.get("action"), d.get("details")["export_id"]) for d in audit] == [("event.export", out["export_id"])]


def test_export_of_an_event_still_recorded_carries_its_segments_and_flags_a_mismatch(fenv, tmp_path):
    from tests.functions.v2 import Lifecycle, signed, ts_segments
    from vigint import clients, config, evidence_export, ingest

    creds = fenv.provision()
    segments = ts_segments(2)
    lc = Lifecycle(creds, fenv.media, segments, start=FIXTURE_START, camera_id="garage")
    msgs = [lc.message(0, "start"), lc.message(1, "update", new_segments=[0]),
            lc.message(2, "update", new_segments=[1])]
    lc.upload(msgs)
    for msg in msgs:
        data, attrs = signed(creds, msg)
        assert ingest.handle_edge_event(data=data, attributes=attrs, now=lc.at(10)) in ("created", "applied")
    # The stored snapshot is not what the device declared: exported as held, and flagged.
    snap_obj = msgs[-1]["snapshot"]["object"]
    clients.storage().bucket(config.settings().bucket).blob(snap_obj).upload_from_string(
        b"\xff\xd8 other bytes", content_type="image/jpeg")

    out = evidence_export.export_event(creds["tenant_id"], lc.event_id, actor={"kind": "cli", "id": "", "name": "t"},
                                       now=lc.at(60))
    assert out["files"] == 5 and out["mismatches"] == 1
    package = clients.storage().bucket(config.settings().bucket).blob(out["object"]).download_as_bytes()
    path = tmp_path / "live.zip"
    path.write_bytes(package)
    with zipfile.ZipFile(path) as zf:
        assert zf.read("segments/00000.ts") == segments[0] and zf.read("segments/00001.ts") == segments[1]
        assert "clip.mp4" not in zf.namelist()
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["mismatches"] == [{"name": "snapshot.jpg",
                                       "problem": "sha256 differs from the one the device declared"}]
    # Without --public-key the package's own key is used, and the answer says so.
    ok = _verify(path)
    assert ok.returncode == 0, ok.stderr
    assert "public_key.pem" in json.loads(ok.stdout)["note"]
