"""Links under control (issue 14): an event's links listed with their accesses, revoked one by one or all
at once (tenant API and CLI), the same 410 for revoked and expired, and signed URLs that end within a
minute. Through the real functions-framework apps (tenant_api, video_link) against the Firestore emulator
and fake-gcs-server."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.functions.test_provisioning import _cli
from tests.functions.test_tenant_api import _tenant
from tests.functions.test_video_link_hls import Events, _playlist

UTC = dt.timezone.utc
SUBS = ("", "/state.json", "/playlist.m3u8", "/download/0")


@pytest.fixture
def link_app(fenv):
    import functions_framework

    return functions_framework.create_app(target="video_link", source="functions/main.py",
                                          signature_type="http").test_client()


def _link(tenant_id: str, event_id: str, recipient: str, ttl_seconds: int = 3600, now=None) -> tuple[str, str]:
    from vigint import links

    token, lid, _ = links.create_link(tenant_id=tenant_id, event_id=event_id, recipient=recipient,
                                      ttl_seconds=ttl_seconds, now=now)
    return token, lid


def _ended_event(events: Events) -> str:
    ev = events.event()
    for i in range(2):
        events.segment(ev, i)
    events.end(ev, segment_count=2)
    return ev


def _access(lid: str) -> list[dict]:
    from vigint import clients

    return [d.to_dict() for d in clients.firestore().collection("links").document(lid).collection("access").stream()]


def _audit(tenant_id: str) -> list[dict]:
    """The tenant's audit entries, oldest first (read directly: ``audit.entries`` orders by ``__name__``
    descending, which the emulator refuses)."""
    from vigint import pipeline

    return [d.to_dict() for d in pipeline.tenant_ref(tenant_id).collection("audit").order_by("__name__").stream()]


def _expires(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Goog-Expires"][0])


def test_revoke_one_of_two_recipients_the_other_still_plays(fenv, tapi, link_app):
    a = _tenant(fenv)
    t = a["tenant_id"]
    events = Events(t)
    ev = _ended_event(events)
    alice, alice_id = _link(t, ev, "alice@example.com")
    bob, bob_id = _link(t, ev, "bob@example.com")
    assert link_app.get(f"/v/{alice}", headers={"User-Agent": "ua-alice"}).status_code == 200

    r = tapi.get(f"/v1/events/{ev}/links", headers=a["viewer"])
    assert r.status_code == 200, r.get_json()
    listed = r.get_json()
    assert listed["event_id"] == ev
    assert [(x["link_id"], x["recipient"], x["state"], x["revoked"]) for x in listed["links"]] == [
        (alice_id, "alice@example.com", "active", False), (bob_id, "bob@example.com", "active", False)]
    assert alice not in r.get_data(as_text=True) and bob not in r.get_data(as_text=True)  # never the token
    got = listed["links"][0]["accesses"]
    assert got["count"] == 1 and got["first_at"] == got["last_at"]
    assert [(x["outcome"], x["kind"], x["user_agent"]) for x in got["recent"]] == [("ok", "page", "ua-alice")]
    assert listed["links"][1]["accesses"] == {"count": 0, "first_at": None, "last_at": None, "recent": []}

    r = tapi.post(f"/v1/links/{alice_id}/revoke", headers=a["admin"])
    assert r.status_code == 200, r.get_json()
    out = r.get_json()
    assert out["state"] == "revoked" and out["revoked"] is True and out["revoked_at"]
    assert out["revoked_by"] == {"kind": "api_key", "id": a["admin_key_id"], "name": "Alice Admin"}

    for sub in SUBS:
        assert link_app.get(f"/v/{alice}{sub}", headers={"User-Agent": "ua-late"}).status_code == 410, sub
    assert link_app.get(f"/v/{bob}").status_code == 200
    _, urls = _playlist(link_app, bob)
    assert len(urls) == 2
    assert link_app.get(f"/v/{bob}/state.json").get_json()["ended"] is True
    assert link_app.get(f"/v/{bob}/download/0").status_code == 302

    # Every refused request is in the access log, with its kind; the same poll again is not written twice.
    assert link_app.get(f"/v/{alice}/state.json").status_code == 410
    denied = sorted((x["outcome"], x["kind"]) for x in _access(alice_id) if x["outcome"] != "ok")
    assert denied == [("revoked", "download"), ("revoked", "page"), ("revoked", "playlist"), ("revoked", "state")]
    listed = tapi.get(f"/v1/events/{ev}/links", headers=a["admin"]).get_json()["links"]
    assert [x["state"] for x in listed] == ["revoked", "active"]
    assert listed[0]["accesses"]["count"] == 5 and listed[0]["accesses"]["recent"][0]["outcome"] == "revoked"
    assert listed[0]["revoked_by"]["id"] == a["admin_key_id"]

    # Idempotent: revoking again keeps the first revocation and writes no second audit entry.
    again = tapi.post(f"/v1/links/{alice_id}/revoke", headers=a["admin"]).get_json()
    assert again["revoked_at"] == out["revoked_at"]
    entries = [e for e in _audit(t) if e["action"] == "link.revoke"]
    assert len(entries) == 1
    assert entries[0]["target"] == {"kind": "link", "id": alice_id}
    assert entries[0]["actor"] == {"kind": "api_key", "id": a["admin_key_id"], "name": "Alice Admin"}
    assert entries[0]["details"] == {"event_id": ev, "recipient": "alice@example.com"}

    # Each page and download served through a link is an event.view entry naming the recipient (issue 11);
    # refused requests and polls of state.json or the playlist are not.
    views = [e for e in _audit(t) if e["action"] == "event.view"]
    assert sorted((e["actor"]["name"], e["details"]["kind"]) for e in views) == [
        ("alice@example.com", "page"), ("bob@example.com", "download"), ("bob@example.com", "page")]
    assert all(e["target"] == {"kind": "event", "id": ev} and e["actor"]["kind"] == "link" for e in views)


def test_revoke_all_roles_and_tenant_isolation(fenv, tapi, link_app):
    a, b = _tenant(fenv), _tenant(fenv)
    events = Events(a["tenant_id"])
    ev = _ended_event(events)
    other = _ended_event(events)
    tokens = [_link(a["tenant_id"], ev, f"r{i}@example.com") for i in range(3)]
    kept, kept_id = _link(a["tenant_id"], other, "r0@example.com")

    # A viewer lists but cannot revoke.
    assert tapi.get(f"/v1/events/{ev}/links", headers=a["viewer"]).status_code == 200
    for path in (f"/v1/links/{tokens[0][1]}/revoke", f"/v1/events/{ev}/links/revoke"):
        r = tapi.post(path, headers=a["viewer"])
        assert r.status_code == 403, path
    # Another tenant: the same 404 as an event or a link that does not exist.
    missing_event = "evt_" + "0" * 26
    for method, path, missing in (
            ("get", f"/v1/events/{ev}/links", f"/v1/events/{missing_event}/links"),
            ("post", f"/v1/events/{ev}/links/revoke", f"/v1/events/{missing_event}/links/revoke"),
            ("post", f"/v1/links/{tokens[0][1]}/revoke", f"/v1/links/{'0' * 64}/revoke")):
        theirs = getattr(tapi, method)(path, headers=b["admin"])
        nothing = getattr(tapi, method)(missing, headers=b["admin"])
        assert theirs.status_code == nothing.status_code == 404, path
        assert theirs.get_data() == nothing.get_data(), path
    assert tapi.post(f"/v1/links/{tokens[0][0]}/revoke", headers=a["admin"]).status_code == 404  # a token is no id
    assert tapi.post("/v1/links/__abcdef__/revoke", headers=a["admin"]).status_code == 404
    missing = tapi.get(f"/v1/events/{missing_event}/links", headers=a["admin"])
    for reserved in ("__abcdef__", "__evt_0123456789__"):  # ids Firestore reserves: answered as missing ones
        for method, path in (("get", f"/v1/events/{reserved}/links"), ("post", f"/v1/events/{reserved}/links/revoke")):
            r = getattr(tapi, method)(path, headers=a["admin"])
            assert (r.status_code, r.get_json()) == (404, missing.get_json()), path
    assert all(link_app.get(f"/v/{tok}").status_code == 200 for tok, _ in tokens)  # nothing revoked so far

    tapi.post(f"/v1/links/{tokens[0][1]}/revoke", headers=a["admin"])
    r = tapi.post(f"/v1/events/{ev}/links/revoke", headers=a["admin"])
    assert r.status_code == 200, r.get_json()
    out = r.get_json()
    assert out["revoked"] == 2 and [x["state"] for x in out["links"]] == ["revoked"] * 3
    for tok, _ in tokens:
        for sub in SUBS:
            assert link_app.get(f"/v/{tok}{sub}").status_code == 410, sub
    assert link_app.get(f"/v/{kept}").status_code == 200  # another event's link of the same recipient
    assert tapi.post(f"/v1/events/{ev}/links/revoke", headers=a["admin"]).get_json()["revoked"] == 0
    assert sorted(e["target"]["id"] for e in _audit(a["tenant_id"]) if e["action"] == "link.revoke") == \
        sorted(lid for _, lid in tokens)
    assert _audit(b["tenant_id"]) == []
    doc = tapi.get("/openapi.json").get_json()
    assert {"/v1/events/{event_id}/links", "/v1/events/{event_id}/links/revoke",
            "/v1/links/{link_id}/revoke"} <= set(doc["paths"])


def test_revoked_and_expired_answer_the_same_bytes(fenv, link_app):
    from vigint import links, pipeline

    events = Events(f"t-same-{fenv.topics['ingested'][-8:]}")
    ev = _ended_event(events)
    past = dt.datetime.now(UTC) - dt.timedelta(hours=2)
    expired, _ = _link(events.tenant_id, ev, "a@example.com", ttl_seconds=3600, now=past)
    revoked, revoked_id = _link(events.tenant_id, ev, "b@example.com")
    links.revoke(revoked_id)
    gone_ev = _ended_event(events)
    gone, _ = _link(events.tenant_id, gone_ev, "c@example.com")
    pipeline.event_ref(events.tenant_id, gone_ev).delete()
    skip = {"Date", "Server"}
    for sub in (*SUBS, "/"):
        answers = [link_app.get(f"/v/{tok}{sub}") for tok in (expired, revoked, gone)]
        assert [r.status_code for r in answers] == [410, 410, 410], sub
        bodies = {r.get_data() for r in answers}
        assert len(bodies) == 1, sub
        heads = {tuple(sorted((k, v) for k, v in r.headers.items() if k not in skip)) for r in answers}
        assert len(heads) == 1, sub
    # The same bytes request after request (no nonce, no time in the error page).
    assert link_app.get(f"/v/{expired}").get_data() == link_app.get(f"/v/{expired}").get_data()
    page = link_app.get(f"/v/{revoked}")
    # Its only style is allowed by the hash of exactly the text between <style> and </style>.
    import base64
    import hashlib
    import re

    style = re.search(r"<style>(.*?)</style>", page.get_data(as_text=True), re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in page.headers["Content-Security-Policy"]
    assert "nonce" not in page.headers["Content-Security-Policy"]
    assert "Link expired" in page.get_data(as_text=True)


def test_signed_urls_last_at_most_a_minute(fenv, link_app, monkeypatch):
    from vigint import config, video_link

    assert config.settings().playback_url_ttl_seconds == 60 and config.settings().segment_url_ttl_seconds == 60
    events = Events(f"t-ttl-{fenv.topics['ingested'][-8:]}")
    ev = _ended_event(events)
    token, _ = _link(events.tenant_id, ev, "a@example.com")
    old = events.event(schema_version=1, ended=True, phase=None)
    events.end(old, segment_count=None)
    old_token, _ = _link(events.tenant_id, old, "a@example.com")

    def urls() -> list[str]:
        _, segs = _playlist(link_app, token)
        st = link_app.get(f"/v/{token}/state.json").get_json()
        old_st = link_app.get(f"/v/{old_token}/state.json").get_json()
        loc = link_app.get(f"/v/{token}/download/0").headers["Location"]
        return [*segs, st["snapshot_url"], *(d["url"] for d in st["downloads"]), old_st["clip_url"], loc]

    got = urls()
    assert len(got) == 6 and all(0 < _expires(u) <= 60 for u in got), [_expires(u) for u in got]
    download = link_app.get(f"/v/{token}/download/0")
    assert download.status_code == 302 and download.headers["Cache-Control"] == "no-store"
    assert parse_qs(urlsplit(download.headers["Location"]).query)["response-content-disposition"][0].startswith(
        "attachment; filename=")
    assert link_app.get(f"/v/{token}/download/1").status_code == 404  # one clip only
    assert link_app.get(f"/v/{token}/download/01").status_code == 404

    # Settings above a minute do not lengthen a link's URLs (a revocation must take effect within one).
    monkeypatch.setenv("VIGINT_PLAYBACK_URL_TTL_SECONDS", "600")
    monkeypatch.setenv("VIGINT_SEGMENT_URL_TTL_SECONDS", "120")
    config.settings.cache_clear()
    video_link._url_cache.clear()
    try:
        assert all(0 < _expires(u) <= 60 for u in urls())
    finally:
        monkeypatch.delenv("VIGINT_PLAYBACK_URL_TTL_SECONDS")
        monkeypatch.delenv("VIGINT_SEGMENT_URL_TTL_SECONDS")
        config.settings.cache_clear()

    # The cache hands out a URL only while it has 30..60 s left: so it never outlives a revocation by a minute.
    t0 = dt.datetime.now(UTC).replace(microsecond=0)
    obj = events.prefix(ev) + "clip.mp4"
    video_link._url_cache.clear()
    first = video_link.signed_get(obj, 3600, t0)
    assert _expires(first) == 60
    assert video_link.signed_get(obj, 60, t0 + dt.timedelta(seconds=30)) == first
    assert video_link._url_cache[(obj, 60, None)][1] == t0
    video_link.signed_get(obj, 60, t0 + dt.timedelta(seconds=31))  # 29 s left: signed again
    assert video_link._url_cache[(obj, 60, None)][1] == t0 + dt.timedelta(seconds=31)


def test_cli_lists_and_revokes_links(fenv, link_app):
    import json

    a = _tenant(fenv)
    t = a["tenant_id"]
    events = Events(t)
    ev = _ended_event(events)
    one, one_id = _link(t, ev, "one@example.com")
    two, two_id = _link(t, ev, "two@example.com")

    r = _cli(fenv.env, "link", "list", "--tenant", t, "--event", ev)
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert [(x["link_id"], x["state"]) for x in listed["links"]] == [(one_id, "active"), (two_id, "active")]
    assert one not in r.stdout and two not in r.stdout

    r = _cli(fenv.env, "link", "revoke", "--tenant", t, "--link", one_id, "--by", "Olga Operator")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["revoked_by"] == {"kind": "cli", "id": "", "name": "Olga Operator"}
    assert link_app.get(f"/v/{one}").status_code == 410 and link_app.get(f"/v/{two}").status_code == 200

    r = _cli(fenv.env, "link", "revoke", "--tenant", t, "--event", ev, "--by", "Olga Operator")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["revoked"] == 1
    assert link_app.get(f"/v/{two}").status_code == 410
    assert [e["actor"]["kind"] for e in _audit(t) if e["action"] == "link.revoke"] == ["cli", "cli"]

    other = _tenant(fenv)["tenant_id"]
    for args in (("revoke", "--tenant", other, "--link", one_id), ("list", "--tenant", other, "--event", ev),
                 ("revoke", "--tenant", t, "--link", "not-a-link-id")):
        r = _cli(fenv.env, "link", *args)
        assert r.returncode == 2 and "not found" in r.stderr, args
    r = _cli(fenv.env, "link", "revoke", "--tenant", t)
    assert r.returncode == 2  # --link or --event is required (argparse)


def test_the_links_query_has_its_composite_index():
    """Google Cloud refuses a query without an index the emulator does not need: the listing's (tenant_id ==,
    event_id ==, order by created_at) must match ``links_by_tenant_event`` in terraform/firestore.tf."""
    import inspect
    import re
    from pathlib import Path

    from vigint import links

    tf = (Path(__file__).resolve().parents[2] / "terraform" / "firestore.tf").read_text()
    block = re.search(r'resource "google_firestore_index" "links_by_tenant_event" \{(.*?)\n\}', tf, re.S).group(1)
    assert re.search(r'collection\s*=\s*"links"', block) and re.search(r'query_scope\s*=\s*"COLLECTION"', block)
    fields = re.findall(r'field_path\s*=\s*"([^"]+)"\s*\n\s*order\s*=\s*"([A-Z]+)"', block)
    assert fields == [("tenant_id", "ASCENDING"), ("event_id", "ASCENDING"), ("created_at", "ASCENDING")]
    src = inspect.getsource(links.of_event)
    assert re.findall(r'FieldFilter\("(\w+)", "=="', src) == ["tenant_id", "event_id"]
    assert 'order_by("created_at")' in src
