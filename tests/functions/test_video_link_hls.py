"""video_link's live side (docs/contracts.md, "Event lifecycle (schema version 2)"): the HLS playlist signed
segment by segment, state.json, the static files and the answers for revoked and expired links, through the
real functions-framework app against the Firestore emulator and fake-gcs-server. The event and segment
documents and objects are written here as ingest writes them (the contract's layout)."""

from __future__ import annotations

import os

import datetime as dt
import fnmatch
import hashlib
import json
import re
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest
import requests

from tests.functions.conftest import FIXTURE_START
from tests.functions.test_edge_api import _verify_v4

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "functions" / "vigint" / "static"


@pytest.fixture
def link_app(fenv):
    import functions_framework

    return functions_framework.create_app(target="video_link", source="functions/main.py",
                                          signature_type="http").test_client()


@pytest.fixture
def public_key(fenv):
    from cryptography.hazmat.primitives import serialization

    key = json.loads(open(fenv.env["GOOGLE_APPLICATION_CREDENTIALS"]).read())["private_key"]
    return serialization.load_pem_private_key(key.encode(), None).public_key()


class Events:
    """Writes v2 events, their segments (object + document) and links, as ingest and alert would."""

    def __init__(self, tenant_id: str, device_id: str = "nuc-1"):
        from vigint import clients, config

        self.tenant_id, self.device_id = tenant_id, device_id
        self.bucket = clients.storage().bucket(config.settings().bucket)
        self.db = clients.firestore()

    def prefix(self, event_id: str) -> str:
        from vigint.schema import event_prefix

        return event_prefix(self.tenant_id, self.device_id, event_id)

    def ref(self, event_id: str):
        from vigint import pipeline

        return pipeline.event_ref(self.tenant_id, event_id)

    def event(self, event_id: str | None = None, **fields) -> str:
        event_id = event_id or f"evt_{uuid.uuid4().hex[:26].upper()}"
        start = FIXTURE_START  # from the run's date: nothing here ages
        snap = self.prefix(event_id) + "snapshots/00000.jpg"
        self.bucket.blob(snap).upload_from_string(b"\xff\xd8\xff-jpeg-" + event_id.encode(), content_type="image/jpeg")
        doc = {
            "schema_version": 2, "event_id": event_id, "tenant_id": self.tenant_id, "device_id": self.device_id,
            "camera_id": "lobby", "kind": "detection", "severity": "alert", "phase": "update", "seq": 1,
            "labels": ["person"], "start_time": start, "end_time": start + dt.timedelta(seconds=6),
            "first_seen": start + dt.timedelta(seconds=3), "ended": False, "segment_count": None,
            "snapshot": {"object": snap, "content_type": "image/jpeg", "bytes": 20, "sha256": "a" * 64,
                         "time": start},
            "clip": None, "continues": None,
            "analysis": {"status": "detections_only", "source": "detections", "threat_level": 2,
                         "title": "Person detected on lobby", "summary": "A person at the door."},
            "verdicts": {"detections": {"threat_level": 2}},
        }
        doc.update(fields)
        self.ref(event_id).set(doc)
        return event_id

    def segment(self, event_id: str, index: int, duration_s: float = 2.0) -> str:
        obj = self.prefix(event_id) + f"segments/{index:05d}.ts"
        data = f"ts {event_id} {index}".encode()
        self.bucket.blob(obj).upload_from_string(data, content_type="video/mp2t")
        self.ref(event_id).collection("segments").document(f"{index:05d}").set({
            "index": index, "object": obj, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "start_s": 2.0 * index, "duration_s": duration_s,
            "received_at": dt.datetime.now(dt.timezone.utc)})
        return obj

    def end(self, event_id: str, segment_count: int, clip: bool = True, **fields) -> None:
        update = {"ended": True, "phase": "end", "segment_count": segment_count, **fields}
        if clip:
            obj = self.prefix(event_id) + "clip.mp4"
            self.bucket.blob(obj).upload_from_string(b"mp4 " + event_id.encode(), content_type="video/mp4")
            update["clip"] = {"object": obj, "content_type": "video/mp4", "bytes": 20, "sha256": "b" * 64,
                              "duration_s": 2.0 * (segment_count or 2)}
        self.ref(event_id).update(update)

    def link(self, event_id: str, ttl_seconds: int = 3600) -> str:
        from vigint import links

        token, _, _ = links.create_link(tenant_id=self.tenant_id, event_id=event_id, recipient="viewer@example.com",
                                        ttl_seconds=ttl_seconds)
        return token


@pytest.fixture
def events(fenv) -> Events:
    return Events(f"t-{uuid.uuid4().hex[:10]}")


def _playlist(link_app, token) -> tuple[list[str], list[str]]:
    """(every line, the segment URLs) of the playlist, after checking its type and caching headers."""
    r = link_app.get(f"/v/{token}/playlist.m3u8")
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert r.headers["Cache-Control"] == "no-store"
    lines = r.get_data(as_text=True).splitlines()
    return lines, [line for line in lines if line and not line.startswith("#")]


def _object_of(url: str, bucket: str) -> str:
    path = urlsplit(url).path
    assert path.startswith(f"/{bucket}/"), url
    return path[len(bucket) + 2:]


def test_playlist_grows_segment_by_segment_stops_at_a_gap_and_ends(fenv, events, link_app, public_key):
    ev = events.event()
    for i, d in enumerate([2.0, 2.0, 3.2]):
        events.segment(ev, i, d)
    token = events.link(ev)

    lines, urls = _playlist(link_app, token)
    assert lines[:5] == ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-PLAYLIST-TYPE:EVENT", "#EXT-X-TARGETDURATION:4",
                         "#EXT-X-MEDIA-SEQUENCE:0"]
    assert [line for line in lines if line.startswith("#EXTINF")] == ["#EXTINF:2.000,", "#EXTINF:2.000,",
                                                                       "#EXTINF:3.200,"]
    assert "#EXT-X-ENDLIST" not in lines and "#EXT-X-DISCONTINUITY" not in lines
    # Each #EXTINF is followed by its segment's URL, in index order.
    assert [_object_of(u, fenv.env["VIGINT_BUCKET"]) for u in urls] == [
        events.prefix(ev) + f"segments/{i:05d}.ts" for i in range(3)]
    for i, url in enumerate(urls):
        assert lines[lines.index(url) - 1].startswith("#EXTINF:")
        query = parse_qs(urlsplit(url).query)
        assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
        assert 0 < int(query["X-Goog-Expires"][0]) <= 60  # a revocation takes effect within a minute
        assert _verify_v4(url, public_key, "GET", {})
        got = requests.get(url, timeout=10)
        assert got.status_code == 200 and got.content == f"ts {ev} {i}".encode()
    # The signature covers exactly that object: moved to another event's segment, it no longer verifies.
    other = events.event()
    events.segment(other, 0)
    parts = urlsplit(urls[0])
    moved = urlunsplit(parts._replace(path=parts.path.replace(ev, other)))
    assert moved != urls[0] and not _verify_v4(moved, public_key, "GET", {})
    assert not _verify_v4(urls[0].replace("00000.ts", "00001.ts"), public_key, "GET", {})

    # Segment 4 stored before 3: the playlist stops at the gap.
    events.segment(ev, 4)
    lines, urls = _playlist(link_app, token)
    assert len(urls) == 3 and "#EXT-X-ENDLIST" not in lines
    # Ended, but segment 3 still missing: no end yet.
    events.end(ev, segment_count=5)
    lines, urls = _playlist(link_app, token)
    assert len(urls) == 3 and "#EXT-X-ENDLIST" not in lines
    events.segment(ev, 3)
    lines, urls = _playlist(link_app, token)
    assert [_object_of(u, fenv.env["VIGINT_BUCKET"]) for u in urls] == [
        events.prefix(ev) + f"segments/{i:05d}.ts" for i in range(5)]
    assert lines[-1] == "#EXT-X-ENDLIST" and lines.count("#EXT-X-ENDLIST") == 1
    assert "#EXT-X-TARGETDURATION:4" in lines


def test_a_split_chain_follows_with_a_discontinuity(fenv, events, link_app):
    second = f"evt_{uuid.uuid4().hex[:26].upper()}"
    first = events.event(continued_by=second)
    events.event(second, continues=first)
    for i in range(2):
        events.segment(first, i)
    events.segment(second, 0, 2.5)
    token = events.link(first)

    # The first event is still going: its continuation is not in the playlist yet.
    lines, urls = _playlist(link_app, token)
    assert len(urls) == 2 and "#EXT-X-DISCONTINUITY" not in lines and "#EXT-X-ENDLIST" not in lines

    events.end(first, segment_count=2)
    lines, urls = _playlist(link_app, token)
    bucket = fenv.env["VIGINT_BUCKET"]
    assert [_object_of(u, bucket) for u in urls] == [events.prefix(first) + "segments/00000.ts",
                                                    events.prefix(first) + "segments/00001.ts",
                                                    events.prefix(second) + "segments/00000.ts"]
    body = [line for line in lines[5:]]
    assert body[4] == "#EXT-X-DISCONTINUITY" and body[5] == "#EXTINF:2.500,"
    assert "#EXT-X-TARGETDURATION:3" in lines and "#EXT-X-ENDLIST" not in lines

    events.segment(second, 1)
    events.end(second, segment_count=2)
    lines, urls = _playlist(link_app, token)
    assert len(urls) == 4 and lines.count("#EXT-X-DISCONTINUITY") == 1 and lines[-1] == "#EXT-X-ENDLIST"
    st = link_app.get(f"/v/{token}/state.json").get_json()
    assert st["parts"] == 2 and st["segments"] == 4 and st["duration_s"] == pytest.approx(8.5)
    assert st["continued_by"] == second and st["ended"] is True and st["complete"] is True
    assert len(st["downloads"]) == 2


def test_segment_url_ttl_setting(fenv, events, link_app, monkeypatch):
    from vigint import config, video_link

    ev = events.event()
    events.segment(ev, 0)
    token = events.link(ev)
    monkeypatch.setenv("VIGINT_SEGMENT_URL_TTL_SECONDS", "30")
    config.settings.cache_clear()
    try:
        assert video_link.segment_url_ttl_seconds() == 30
        _, urls = _playlist(link_app, token)
        assert parse_qs(urlsplit(urls[0]).query)["X-Goog-Expires"] == ["30"]
    finally:
        monkeypatch.delenv("VIGINT_SEGMENT_URL_TTL_SECONDS")
        config.settings.cache_clear()
    for bad in ("abc", "5", "100000"):
        with pytest.raises(config.ConfigError, match="VIGINT_SEGMENT_URL_TTL_SECONDS"):
            config.load({**os.environ, "VIGINT_SEGMENT_URL_TTL_SECONDS": bad})


def test_state_json_follows_the_event(fenv, events, link_app, public_key):
    ev = events.event()
    events.segment(ev, 0)
    events.segment(ev, 1, 1.5)
    token = events.link(ev)

    r = link_app.get(f"/v/{token}/state.json")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    st = r.get_json()
    assert st["mode"] == "hls" and st["ended"] is False and st["complete"] is False
    assert st["title"] == "Person detected on lobby" and st["summary"] == "A person at the door."
    assert (st["threat_level"], st["threat_word"], st["verdict"]) == (2, "Medium threat", "detections")
    assert st["labels"] == ["person"] and st["camera_id"] == "lobby"
    assert st["first_seen"] == (FIXTURE_START + dt.timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert st["duration_s"] == pytest.approx(3.5) and st["segments"] == 2
    assert st["download_url"] is None and st["downloads"] == [] and st["continued_by"] is None
    assert _object_of(st["snapshot_url"], fenv.env["VIGINT_BUCKET"]) == events.prefix(ev) + "snapshots/00000.jpg"
    assert _verify_v4(st["snapshot_url"], public_key, "GET", {})

    # Gemini's first pass arrives, then the end with the clip and the full pass.
    events.ref(ev).update({"analysis": {"status": "ok", "source": "gemini", "threat_level": 3,
                                        "title": "Intruder at the lobby door", "summary": "Forcing the lock."},
                           "verdicts.first": {"threat_level": 3}})
    st = link_app.get(f"/v/{token}/state.json").get_json()
    assert (st["title"], st["threat_level"], st["threat_word"], st["verdict"]) == (
        "Intruder at the lobby door", 3, "High threat", "first")
    events.end(ev, segment_count=2, **{"verdicts.full": {"threat_level": 3}})
    st = link_app.get(f"/v/{token}/state.json").get_json()
    assert st["ended"] is True and st["complete"] is True and st["verdict"] == "full"
    url = st["download_url"]
    assert _object_of(url, fenv.env["VIGINT_BUCKET"]) == events.prefix(ev) + "clip.mp4"
    assert _verify_v4(url, public_key, "GET", {})
    assert parse_qs(urlsplit(url).query)["response-content-disposition"] == [
        f'attachment; filename="vigint-lobby-{FIXTURE_START:%Y%m%d}-060000.mp4"']
    assert requests.get(url, timeout=10).content == b"mp4 " + ev.encode()


def test_revoked_and_expired_links_answer_410_everywhere_and_ok_polls_write_nothing(fenv, events, link_app, caplog):
    from vigint import clients, links, video_link

    ev = events.event()
    events.segment(ev, 0)
    token = events.link(ev, ttl_seconds=600)
    access = clients.firestore().collection("links").document(links.link_id(token)).collection("access")
    caplog.set_level("DEBUG")

    assert link_app.get(f"/v/{token}", headers={"User-Agent": "ua-test"}).status_code == 200
    for _ in range(3):
        assert link_app.get(f"/v/{token}/playlist.m3u8").status_code == 200
        assert link_app.get(f"/v/{token}/state.json").status_code == 200
    assert [a.get("outcome") for a in access.stream()] == ["ok"]  # one write per page view, none per poll
    logged = "\n".join(rec.getMessage() for rec in caplog.records if not rec.name.startswith("urllib3"))
    assert token not in logged and "X-Goog-Signature" not in logged

    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=601)
    for sub in ("", "/playlist.m3u8", "/state.json"):
        body, status, headers = video_link.handle(method="GET", path=f"/v/{token}{sub}", now=later)
        assert status == 410 and headers["Cache-Control"] == "no-store", sub
        text = body if isinstance(body, str) else body.decode()
        for secret in ("X-Goog", ev, "lobby", events.tenant_id, "Person", "#EXTINF"):
            assert secret not in text, (sub, secret)

    links.revoke(links.link_id(token))
    for sub in ("", "/playlist.m3u8", "/state.json"):
        r = link_app.get(f"/v/{token}{sub}")
        assert r.status_code == 410, sub
        assert "X-Goog" not in r.get_data(as_text=True) and ev not in r.get_data(as_text=True)
    assert link_app.get(f"/v/{token}/state.json").get_json() == {"error": "link expired"}
    # Refused requests are logged once per kind and outcome (the repeated state poll is not written again).
    assert sorted((a.get("outcome"), a.get("kind")) for a in access.stream()) == [
        ("expired", "page"), ("expired", "playlist"), ("expired", "state"), ("ok", "page"),
        ("revoked", "page"), ("revoked", "playlist"), ("revoked", "state")]

    unknown = "A" * 43
    for sub in ("", "/playlist.m3u8", "/state.json"):
        assert link_app.get(f"/v/{unknown}{sub}").status_code == 404
    assert link_app.get(f"/v/{token}/clip.mp4").status_code == 404
    assert link_app.post(f"/v/{token}/state.json").status_code == 405


def test_static_files_are_allow_listed_and_cached(fenv, link_app):
    from infra import vendor

    vendor.check()  # the committed hls.js is the locked npm tarball's (offline check of the recorded sums)
    for name, file, ctype in (("hls.light.min.js", "hls.light.min.js", "text/javascript"),
                              ("player.js", "player.js", "text/javascript"), ("player.css", "player.css", "text/css"),
                              ("hls.js.LICENSE", "vendor/hls.js.LICENSE", "text/plain")):
        r = link_app.get(f"/v/static/{name}?v=whatever")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith(ctype), name
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.data == (STATIC / file).read_bytes()
    assert b"1.7.4" in link_app.get("/v/static/hls.light.min.js").data
    assert b"Apache License" in link_app.get("/v/static/hls.js.LICENSE").data
    for name in ("package.json", "vendor", "SHA256SUMS", "package-lock.json", "..%2Fvideo_link.py", "nope.js"):
        assert link_app.get(f"/v/static/{name}").status_code == 404, name
    assert link_app.get("/v/static/vendor/package-lock.json").status_code == 404
    assert link_app.get("/v/static/../video_link.py").status_code == 404


def test_page_markup_and_csp(fenv, events, link_app):
    from vigint import video_link

    ev = events.event()
    token = events.link(ev)
    r = link_app.get(f"/v/{token}")
    assert r.status_code == 200
    csp = dict(d.strip().split(" ", 1) for d in r.headers["Content-Security-Policy"].split(";"))
    bucket = fenv.env["STORAGE_EMULATOR_HOST"]
    assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'"
    assert set(csp["connect-src"].split()) == {"'self'", bucket}
    assert set(csp["media-src"].split()) == {"'self'", "blob:", bucket}
    assert csp["img-src"] == bucket and csp["worker-src"] == "blob:" and csp["frame-ancestors"] == "'none'"
    page = r.get_data(as_text=True)
    scripts = re.findall(r"<script\b[^>]*>", page)
    assert scripts == [f'<script src="static/hls.light.min.js?v={video_link.static_version("hls.light.min.js")}">',
                       f'<script src="static/player.js?v={video_link.static_version("player.js")}">']
    assert "</script>" in page and not re.search(r"<script\b[^>]*>[^<]+</script>", page)  # no inline script
    assert " on" + "load=" not in page and "javascript:" not in page
    video = re.search(r"<video\b[^>]*>", page).group(0)
    assert 'id="video"' in video and " src=" not in video  # the player sets the source
    assert f'data-playlist="{token}/playlist.m3u8"' in page and f'data-state="{token}/state.json"' in page
    assert "Recording" in page and "Person detected on lobby" in page and "Medium threat" in page
    assert "The video starts in a few seconds" in page  # no segment yet
    # Behind .../v/{token}/ the relative URLs climb one level.
    slash = link_app.get(f"/v/{token}/").get_data(as_text=True)
    assert 'src="../static/player.js?v=' in slash and f'data-playlist="../{token}/playlist.m3u8"' in slash

    # An old (schema v1) event with only clip.mp4: the page plays the MP4 and loads no hls.js.
    old = events.event(schema_version=1, ended=True, phase=None)
    events.end(old, segment_count=None)
    page = link_app.get(f"/v/{events.link(old)}").get_data(as_text=True)
    assert re.search(r'<video controls playsinline[^>]*\ssrc="[^"]*clip\.mp4', page)
    assert "hls.light.min.js" not in page and "player.js" in page
    assert link_app.get(f"/v/{events.link(old)}/playlist.m3u8").status_code == 404


def test_the_functions_zip_ships_static_and_templates():
    """terraform/storage.tf zips functions/ whole; none of its excludes may drop the page's files."""
    tf = (REPO / "terraform" / "storage.tf").read_text()
    block = re.search(r'data "archive_file" "functions" \{(.*?)\n\}', tf, re.S).group(1)
    assert 'source_dir  = var.functions_source_dir' in block
    excludes = re.findall(r'"([^"]+)"', re.search(r"excludes\s*=\s*\[(.*?)\]", block, re.S).group(1))
    shipped = [p.relative_to(REPO / "functions").as_posix() for p in (REPO / "functions" / "vigint").rglob("*")
               if p.is_file() and ("static" in p.parts or "templates" in p.parts)]
    assert "vigint/static/hls.light.min.js" in shipped and "vigint/static/player.js" in shipped
    for path in shipped:
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in excludes), path
