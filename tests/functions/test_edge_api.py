"""edge_api through functions-framework's Flask app, against the emulators and fake-gcs-server."""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import pytest
import requests


@pytest.fixture
def api(fenv):
    import functions_framework

    app = functions_framework.create_app(target="edge_api", source="functions/main.py", signature_type="http")
    return app.test_client()


def _auth(creds: dict, secret: str | None = None) -> dict:
    return {"Authorization": f"Bearer {secret or creds['secret']}", "X-Vigint-Tenant": creds["tenant_id"],
            "X-Vigint-Device": creds["device_id"]}


def _files(clip_bytes: int = 1000, snap_bytes: int = 100) -> list:
    return [{"name": "clip.mp4", "content_type": "video/mp4", "bytes": clip_bytes},
            {"name": "snapshot.jpg", "content_type": "image/jpeg", "bytes": snap_bytes}]


def test_unauthorized_answers_are_identical(fenv, api):
    from vigint import provisioning

    creds = fenv.provision()
    other = fenv.provision(tenant_id=creds["tenant_id"], device_id="gone-box")
    provisioning.revoke_device(creds["tenant_id"], "gone-box")
    body = json.dumps({"event_id": "evt_0123456789", "files": _files()})
    cases = {
        "wrong secret": _auth(creds, secret="x" * 43),
        "revoked device": _auth(other),
        "unknown tenant": {**_auth(creds), "X-Vigint-Tenant": "no-such-tenant"},
        "unknown device": {**_auth(creds), "X-Vigint-Device": "no-such-box"},
        "no credentials": {},
        "another device's secret": {**_auth(creds), "Authorization": f"Bearer {other['secret']}"},
    }
    answers = {}
    for name, headers in cases.items():
        r = api.post("/v1/uploads", headers=headers, data=body, content_type="application/json")
        answers[name] = (r.status_code, r.get_data(), r.headers.get("WWW-Authenticate"))
    assert len(set(answers.values())) == 1, answers  # byte-identical for every cause
    status, raw, _ = answers["wrong secret"]
    assert (status, json.loads(raw)) == (401, {"error": "unauthorized"})
    ok = api.post("/v1/uploads", headers=_auth(creds), data=body, content_type="application/json")
    assert ok.status_code == 200


def test_uploads_are_under_the_device_prefix_and_put_works(fenv, api, media):
    from vigint import clients, config

    creds = fenv.provision()
    r = api.post("/v1/uploads", headers=_auth(creds),
                 json={"event_id": "evt_01JDTEST000000000000000000", "files": _files(len(media["clip"]), len(media["snapshot"]))})
    assert r.status_code == 200, r.get_json()
    uploads = {u["name"]: u for u in r.get_json()["uploads"]}
    prefix = f"tenants/{creds['tenant_id']}/devices/{creds['device_id']}/events/evt_01JDTEST000000000000000000/"
    assert uploads["clip.mp4"]["object"] == prefix + "clip.mp4"
    assert uploads["snapshot.jpg"]["object"] == prefix + "snapshot.jpg"
    for name, u in uploads.items():
        assert u["method"] == "PUT"
        assert urlsplit(u["url"]).path == f"/{config.settings().bucket}/{prefix}{name}"
        expires = dt.datetime.fromisoformat(u["expires_at"].replace("Z", "+00:00"))
        assert 880 <= (expires - dt.datetime.now(dt.timezone.utc)).total_seconds() <= 900
    # A real PUT through the signed URL lands in fake-gcs-server.
    put = requests.put(uploads["clip.mp4"]["url"], data=media["clip"], headers=uploads["clip.mp4"]["headers"], timeout=10)
    assert put.status_code == 200, put.text
    blob = clients.storage().bucket(config.settings().bucket).blob(prefix + "clip.mp4")
    assert blob.download_as_bytes() == media["clip"]


@pytest.mark.parametrize(
    "payload, status, field",
    [
        ({"event_id": "../../x", "files": _files()}, 400, "event_id"),
        ({"event_id": "evt_0123456789/../../y", "files": _files()}, 400, "event_id"),
        ({"event_id": "evt_0123456789", "files": [{"name": "evil.sh", "content_type": "video/mp4", "bytes": 1}]},
         400, "files.0.name"),
        ({"event_id": "evt_0123456789", "files": [{"name": "clip.mp4", "content_type": "text/html", "bytes": 1}]},
         400, "files.0.content_type"),
        ({"event_id": "evt_0123456789", "files": _files(), "extra": 1}, 400, "extra"),
        ({"event_id": "evt_0123456789", "files": _files(clip_bytes=512 * 1024 * 1024 + 1)}, 413, "files.0.bytes"),
        ({"event_id": "evt_0123456789", "files": _files(snap_bytes=10 * 1024 * 1024 + 1)}, 413, "files.1.bytes"),
        ({"event_id": "evt_0123456789", "files": [{"name": "segments/1.ts", "content_type": "video/mp2t",
                                                   "bytes": 1}]}, 400, "files.0.name"),
        ({"event_id": "evt_0123456789", "files": [{"name": "segments/../00001.ts", "content_type": "video/mp2t",
                                                   "bytes": 1}]}, 400, "files.0.name"),
        ({"event_id": "evt_0123456789", "files": [{"name": "segments/00001.ts", "content_type": "video/mp4",
                                                   "bytes": 1}]}, 400, "files.0.content_type"),
        ({"event_id": "evt_0123456789", "files": [{"name": "segments/00001.ts", "content_type": "video/mp2t",
                                                   "bytes": 32 * 1024 * 1024 + 1}]}, 413, "files.0.bytes"),
        ({"event_id": "evt_0123456789", "files": [{"name": "snapshots/00001.jpg", "content_type": "image/jpeg",
                                                   "bytes": 10 * 1024 * 1024 + 1}]}, 413, "files.0.bytes"),
    ],
)
def test_uploads_rejects_bad_requests(fenv, api, payload, status, field):
    creds = fenv.provision()
    r = api.post("/v1/uploads", headers=_auth(creds), json=payload)
    assert r.status_code == status, r.get_json()
    assert r.get_json()["field"] == field
    assert "url" not in r.get_data(as_text=True)


def test_lifecycle_files_are_signed_under_the_event_prefix(fenv, api):
    """Schema version 2 names: HLS segments and per-message snapshots (docs/contracts.md, "Event lifecycle")."""
    creds = fenv.provision()
    files = [{"name": "segments/00000.ts", "content_type": "video/mp2t", "bytes": 1000},
             {"name": "segments/00001.ts", "content_type": "video/mp2t", "bytes": 1000},
             {"name": "snapshots/00003.jpg", "content_type": "image/jpeg", "bytes": 100}]
    r = api.post("/v1/uploads", headers=_auth(creds), json={"event_id": "evt_0123456789", "files": files})
    assert r.status_code == 200, r.get_json()
    prefix = f"tenants/{creds['tenant_id']}/devices/{creds['device_id']}/events/evt_0123456789/"
    assert [u["object"] for u in r.get_json()["uploads"]] == [prefix + f["name"] for f in files]
    assert [u["headers"]["Content-Type"] for u in r.get_json()["uploads"]] == [f["content_type"] for f in files]


def _verify_v4(url: str, public_key, method: str, headers: dict) -> bool:
    """Rebuilds the V4 canonical request and string-to-sign from a signed URL and checks its RSA signature.

    Follows https://cloud.google.com/storage/docs/authentication/signatures (GOOG4-RSA-SHA256).
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    signature = dict(query)["X-Goog-Signature"]
    q = sorted((k, v) for k, v in query if k != "X-Goog-Signature")
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in q)
    signed_headers = dict(query)["X-Goog-SignedHeaders"].split(";")
    all_headers = {"host": parts.netloc, **{k.lower(): v for k, v in headers.items()}}
    canonical_headers = "".join(f"{h}:{all_headers[h].strip()}\n" for h in signed_headers)
    canonical_request = "\n".join(
        [method, parts.path, canonical_query, canonical_headers, ";".join(signed_headers), "UNSIGNED-PAYLOAD"]
    )
    credential = dict(query)["X-Goog-Credential"]
    scope = credential.split("/", 1)[1]
    string_to_sign = "\n".join(
        ["GOOG4-RSA-SHA256", dict(query)["X-Goog-Date"], scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    try:
        public_key.verify(binascii.unhexlify(signature), string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
        return True
    except InvalidSignature:
        return False


def test_signed_url_signature_verifies_and_binds_the_path(fenv, api):
    from cryptography.hazmat.primitives import serialization

    key_info = json.loads(open(fenv.env["GOOGLE_APPLICATION_CREDENTIALS"]).read())
    public_key = serialization.load_pem_private_key(key_info["private_key"].encode(), None).public_key()
    creds = fenv.provision()
    r = api.post("/v1/uploads", headers=_auth(creds), json={"event_id": "evt_0123456789", "files": _files()})
    url, headers = r.get_json()["uploads"][0]["url"], r.get_json()["uploads"][0]["headers"]
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Credential"].startswith(key_info["client_email"] + "/")
    assert query["X-Goog-Expires"] == "900"
    assert "content-type" in query["X-Goog-SignedHeaders"].split(";")

    assert _verify_v4(url, public_key, "PUT", headers)  # the headers handed out (tests/functions/test_evidence_integrity.py)
    # The same signature does not cover another device's prefix, another content type or another method.
    parts = urlsplit(url)
    moved = urlunsplit(parts._replace(path=parts.path.replace(f"/devices/{creds['device_id']}/", "/devices/other-box/")))
    assert moved != url
    assert not _verify_v4(moved, public_key, "PUT", headers)
    assert not _verify_v4(url, public_key, "PUT", {**headers, "Content-Type": "text/html"})
    assert not _verify_v4(url, public_key, "GET", headers)


def test_publish_credentials_emulator_mode(fenv, api):
    creds = fenv.provision()
    r = api.post("/v1/publish-credentials", headers=_auth(creds))
    assert r.status_code == 200
    assert r.get_json() == {"topic": f"projects/{fenv.env['GOOGLE_CLOUD_PROJECT']}/topics/edge-events",
                            "mode": "emulator"}


class _FakeIam:
    """IAM Credentials ``generateAccessToken`` over HTTP (records requests)."""

    def __init__(self, status: int = 200):
        self.requests, self.status = [], status
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "json": body})
                if fake.status != 200:
                    out = {"error": {"code": fake.status, "message": "denied", "status": "PERMISSION_DENIED"}}
                else:
                    exp = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=int(body["lifetime"].rstrip("s")))
                    out = {"accessToken": "ya29.fake-publisher-token", "expireTime": exp.strftime("%Y-%m-%dT%H:%M:%SZ")}
                data = json.dumps(out).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, sa: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1/projects/-/serviceAccounts/{sa}:generateAccessToken"


@pytest.mark.parametrize("iam_status", [200, 403])
def test_publish_credentials_token_mode(fenv, monkeypatch, iam_status):
    """Outside the emulator: a token of the publisher account via the real google-auth impersonation path."""
    from google.oauth2.credentials import Credentials

    from vigint import clients, edge_api

    creds = fenv.provision()
    sa = "edge-publisher@vigint-local.iam.gserviceaccount.com"
    monkeypatch.delenv("PUBSUB_EMULATOR_HOST")
    monkeypatch.setenv("VIGINT_PUBLISHER_SERVICE_ACCOUNT", sa)
    clients.reset()
    iam = _FakeIam(iam_status)
    try:
        minter = edge_api.IamTokenMinter(source_credentials=Credentials(token="source-token"),
                                         iam_endpoint_override=iam.url(sa))
        body, status, _ = edge_api.handle(method="POST", path="/v1/publish-credentials", headers=_auth(creds),
                                          body=b"", token_minter=minter)
    finally:
        iam.server.shutdown()
    assert len(iam.requests) == 1
    req = iam.requests[0]
    assert req["auth"] == "Bearer source-token"
    assert req["path"].endswith(f"/serviceAccounts/{sa}:generateAccessToken")
    assert req["json"]["scope"] == ["https://www.googleapis.com/auth/pubsub"]
    assert req["json"]["lifetime"] == "3600s"
    if iam_status == 200:
        assert status == 200
        assert body["mode"] == "access_token" and body["access_token"] == "ya29.fake-publisher-token"
        assert body["topic"].endswith("/topics/edge-events")
        left = dt.datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")) - dt.datetime.now(dt.timezone.utc)
        assert 3500 <= left.total_seconds() <= 3600
    else:
        assert (status, body) == (503, {"error": "publish credentials unavailable"})


def test_heartbeat_records_on_the_device(fenv, api):
    from vigint import pipeline

    creds = fenv.provision()
    r = api.post("/v1/heartbeat", headers=_auth(creds),
                 json={"cameras": {"lobby": {"fps": 10.0}}, "spool": {"pending": 0}, "version": "0.1.0"})
    assert (r.status_code, r.get_json()) == (200, {"config": {}, "commands": []})
    dev = pipeline.tenant_ref(creds["tenant_id"]).collection("devices").document(creds["device_id"]).get().to_dict()
    assert dev["last_heartbeat_at"] is not None
    assert dev["last_heartbeat"]["version"] == "0.1.0"
    bad = api.post("/v1/heartbeat", headers=_auth(creds), json={"version": 3})
    assert bad.status_code == 400 and bad.get_json()["field"] == "version"


def test_unknown_route_and_method(fenv, api):
    creds = fenv.provision()
    assert api.post("/v1/nothing", headers=_auth(creds)).status_code == 404
    assert api.get("/v1/uploads", headers=_auth(creds)).status_code == 405
